package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/cli"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// Validity periods. CAs outlive every certificate they sign; identity
// certificates are long-lived as in AWS IoT; the MQTT server certificate
// lives as long as the group says (7 days by default), as v1's did.
const (
	caValidity       = 20 * 365 * 24 * time.Hour
	identityValidity = 10 * 365 * 24 * time.Hour
)

// dnsName is a host name: dot-separated labels of letters, digits and '-'.
var dnsName = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

func validServerName(n string) bool { return net.ParseIP(n) != nil || dnsName.MatchString(n) }

// thingName is v1's pattern for thing names.
var thingName = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// deprecatedTPMStore is the old --key-store word for keyspec.TPM: the
// openssl tpm2 provider's URI scheme, which tpm2:handle= references keep.
const deprecatedTPMStore = "tpm2"

type initOptions struct {
	dir      string
	core     string
	devices  []string
	keyStore keyspec.Backend
	store    storeFlags // where tpm and pkcs11 keys are made
	keyType  keyspec.Type
	// serverKeyType is the MQTT server key's type: RSA-2048 as in v1,
	// but EC P-256 in a TPM (see docs/design.md: real TPMs pad RSA-PSS with
	// the maximum salt, which TLS 1.3 refuses).
	serverKeyType keyspec.Type
	port          int
	bind          string
	names         []string // extra MQTT server certificate names (DNS or IP)
	region        string
	account       string
}

// parseInit defines init's flags on the invocation's flag set, parses
// its arguments and checks them all, returning every problem at once.
func parseInit(inv *cli.Invocation) (initOptions, error) {
	fs := inv.Flags
	var o initOptions
	var devices stringList
	var keyStore, keyType, serverKeyType string
	fs.StringVar(&o.dir, "dir", "", "bundle directory to create (must not exist, or be empty)")
	fs.StringVar(&o.core, "core", "", "the core's thing name")
	fs.Var(&devices, "device", "a device's thing name (repeat for more devices)")
	fs.StringVar(&keyStore, "key-store", string(keyspec.File), "where the core's keys live: file, tpm or pkcs11")
	fs.StringVar(&keyType, "key-type", string(keyspec.ECP256), "core and device key type: rsa2048, rsa3072, ecp256 or ecp384")
	fs.StringVar(&serverKeyType, "server-key-type", "", "MQTT server key type (default rsa2048; ecp256 with --key-store tpm)")
	o.store.register(fs)
	fs.IntVar(&o.port, "mqtt-port", config.DefaultGGMqttPort, "local MQTT port (ggMqttPort)")
	fs.StringVar(&o.bind, "bind", "127.0.0.1", "address the local MQTT server binds (ggcore.localMqttBind); 0.0.0.0 serves the LAN")
	var names stringList
	fs.Var(&names, "server-name", "a DNS name or IP address devices use to reach the core, added to the MQTT server certificate (repeat for more)")
	fs.StringVar(&o.region, "region", "us-east-1", "region written into ARNs")
	fs.StringVar(&o.account, "account", "000000000000", "12-digit account ID written into ARNs")
	if _, err := inv.Parse("", 0, 0); err != nil {
		return o, err
	}
	o.devices = devices
	o.names = names
	var problems []error
	if o.dir == "" {
		problems = append(problems, errors.New("--dir is required"))
	}
	if !thingName.MatchString(o.core) {
		problems = append(problems, fmt.Errorf("--core %q: want a thing name of 1-128 characters [a-zA-Z0-9:_-]", o.core))
	}
	if len(o.devices) == 0 {
		problems = append(problems, errors.New("at least one --device is required"))
	}
	seen := map[string]bool{o.core: true}
	for _, d := range o.devices {
		switch {
		case !thingName.MatchString(d):
			problems = append(problems, fmt.Errorf("--device %q: want a thing name of 1-128 characters [a-zA-Z0-9:_-]", d))
		case d == o.core:
			problems = append(problems, fmt.Errorf("--device %q: the core's name", d))
		case seen[d]:
			problems = append(problems, fmt.Errorf("--device %q: given twice", d))
		}
		seen[d] = true
	}
	t, err := keyspec.ParseType(keyType)
	if err != nil {
		problems = append(problems, fmt.Errorf("--key-type: %v", err))
	}
	o.keyType = t
	if keyStore == deprecatedTPMStore {
		// Bundles and scripts made before the backend was named "tpm"
		// everywhere still pass the URI scheme's word.
		fmt.Fprintf(inv.Stderr, "ggprov: warning: --key-store %s is now spelled %s\n", deprecatedTPMStore, keyspec.TPM)
		keyStore = string(keyspec.TPM)
	}
	if o.keyStore, err = keyspec.ParseBackend(keyStore); err != nil {
		problems = append(problems, fmt.Errorf("--key-store: %v", err))
	}
	problems = append(problems, o.store.check(o.keyStore)...)
	switch {
	case serverKeyType != "":
		st, err := keyspec.ParseType(serverKeyType)
		if err != nil {
			problems = append(problems, fmt.Errorf("--server-key-type: %v", err))
		}
		o.serverKeyType = st
	case o.keyStore == keyspec.TPM:
		o.serverKeyType = keyspec.ECP256
	default:
		o.serverKeyType = keyspec.RSA2048
	}
	if o.port < 1 || o.port > 65535 {
		problems = append(problems, fmt.Errorf("--mqtt-port %d: want 1-65535", o.port))
	}
	for _, n := range o.names {
		if !validServerName(n) {
			problems = append(problems, fmt.Errorf("--server-name %q: want a DNS name or an IP address", n))
		}
	}
	if net.ParseIP(o.bind) == nil {
		problems = append(problems, fmt.Errorf("--bind %q: want an IP address", o.bind))
	}
	if !regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`).MatchString(o.region) {
		problems = append(problems, fmt.Errorf("--region %q: want a region name such as us-east-1", o.region))
	}
	if !regexp.MustCompile(`^[0-9]{12}$`).MatchString(o.account) {
		problems = append(problems, fmt.Errorf("--account %q: want 12 digits", o.account))
	}
	if len(problems) > 0 {
		return o, usagef("%w", errors.Join(problems...))
	}
	return o, nil
}

// runInit writes a provisioning bundle into --dir.
func runInit(_ context.Context, inv *cli.Invocation) error {
	o, err := parseInit(inv)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if err := checkEmpty(dir); err != nil {
		return err
	}
	// Build the bundle beside its final place and rename it there, so a
	// failure half-way leaves nothing behind.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create the bundle's parent directory: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("create a temporary bundle directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	b := &bundle{final: dir, tmp: tmp, opts: o, progress: inv.Stderr}
	if o.keyStore != keyspec.File {
		b.keys = keys.NewStore(o.store.storeOptions())
		defer b.keys.Close()
	}
	if err := b.build(); err != nil {
		b.undo()
		return err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace the empty --dir: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move the bundle into place: %w", err)
	}
	b.summary(inv.Stdout)
	return nil
}

// checkEmpty refuses a --dir that exists with anything in it.
func checkEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--dir: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("%s exists and is not empty; choose a new --dir", dir)
	}
	return nil
}

// bundle writes one provisioning bundle into tmp, naming every path by
// where it will be once renamed to final.
type bundle struct {
	final, tmp string
	opts       initOptions
	progress   io.Writer
	keys       *keys.Store // the TPM or token of --key-store; nil for file
	created    []string    // token keys made so far, destroyed by undo

	arnPrefix string
	deviceIDs map[string]string
}

func (b *bundle) step(format string, args ...any) {
	fmt.Fprintf(b.progress, "ggprov: "+format+"\n", args...)
}

func (b *bundle) build() error {
	o := b.opts
	b.arnPrefix = fmt.Sprintf("arn:aws:iot:%s:%s:", o.region, o.account)
	b.deviceIDs = map[string]string{}
	for _, d := range []string{"certs", "devices", "write", "write/dcm", "write/deployment/group"} {
		if err := os.MkdirAll(filepath.Join(b.tmp, d), 0o700); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(b.tmp, "devices"), 0o755); err != nil {
		return err
	}

	b.step("creating the identity CA and the group CA (RSA-2048)")
	rootCA, err := pki.NewCA(o.core+" identity CA", caValidity)
	if err != nil {
		return err
	}
	groupCA, err := pki.NewCA(o.core+" group CA", caValidity)
	if err != nil {
		return err
	}
	if err := b.writeCA("certs/root.ca", rootCA); err != nil {
		return err
	}
	if err := b.writeCA("certs/group-ca", groupCA); err != nil {
		return err
	}

	b.step("creating the core's identity %q (%s key%s)", o.core, o.keyType, b.where())
	coreKey, coreRef, err := b.coreKey("iot", "certs/core.key.pem", o.keyType, keyspec.Sign)
	if err != nil {
		return err
	}
	coreID, err := b.certify(rootCA, coreKey, "certs/core", o.core)
	if err != nil {
		return err
	}
	secretsRef, secretsKey := coreRef, coreKey
	_, isRSA := coreKey.Public().(*rsa.PublicKey)
	if !isRSA || b.keys != nil {
		// A TPM or token key either signs or decrypts, never both.
		b.step("creating the SecretsManager key (RSA-2048, for decryption%s)", b.where())
		secretsKey, secretsRef, err = b.coreKey("secrets", "certs/secrets.key.pem", keyspec.RSA2048, keyspec.Decrypt)
		if err != nil {
			return err
		}
	}
	// Its public key, which ggprov register gives the control plane to
	// seal the group's secrets to.
	if err := writePublicKey(filepath.Join(b.tmp, secretsPubPath), secretsKey); err != nil {
		return err
	}

	devices := make([]config.Thing, 0, len(o.devices))
	for i, name := range o.devices {
		if len(o.devices) <= 20 || i%100 == 0 || i == len(o.devices)-1 {
			// Large fleets get a line every hundred devices.
			b.step("creating device %q (%d of %d)", name, i+1, len(o.devices))
		}
		id, _, err := b.identity(rootCA, "devices/"+name, name)
		if err != nil {
			return err
		}
		b.deviceIDs[name] = id
		devices = append(devices, b.thing(name, id))
	}

	b.step("creating the MQTT server key (%s%s) and certificate (signed by the group CA, valid 7 days)", o.serverKeyType, b.where())
	serverRef, err := b.serverCertificate(groupCA)
	if err != nil {
		return err
	}

	cfg := config.Config{
		CoreThing: config.CoreThing{
			ThingArn: b.arnPrefix + "thing/" + o.core,
			// No upstream and no control plane until `ggprov register
			// --iot/--ggcloud` (or the user) names them.
			IotMqttPort: config.DefaultIotMqttPort, GGHttpPort: config.DefaultGGHttpPort,
			GGMqttPort: o.port, KeepAlive: config.DefaultKeepAlive,
		},
		Crypto: config.Crypto{
			CAPath: b.path("certs/root.ca.pem"),
			Principals: config.Principals{
				IoTCertificate: config.IoTCertificate{
					PrivateKey:      coreRef,
					CertificatePath: b.path("certs/core.cert.pem"),
				},
				MQTTServerCertificate: config.Principal{PrivateKey: serverRef},
				SecretsManager:        config.Principal{PrivateKey: secretsRef},
			},
		},
		WriteDirectory: b.path("write"),
		GGCore:         config.GGCore{TLSProfile: "strict", LocalMQTTBind: o.bind, TPM: config.TPM{Device: keyspec.DefaultTPMDevice}},
	}
	switch o.keyStore {
	case keyspec.TPM:
		cfg.GGCore.TPM.Device = o.store.tpmDevice
	case keyspec.PKCS11:
		cfg.Crypto.PKCS11 = &config.PKCS11{P11Provider: o.store.pkcs11Module, SlotLabel: o.store.pkcs11Token}
	}
	coreThing := b.thing(o.core, coreID)
	coreThing.SyncShadow = true // as v1 created cores
	group := config.Group{
		GroupId:                         newGroupID(),
		GroupVersionId:                  "1",
		CertificateExpiryInMilliseconds: config.DefaultCertificateExpiryMs,
		Cores:                           []config.Thing{coreThing},
		Devices:                         devices,
		Subscriptions:                   []config.Subscription{},
		Functions:                       []json.RawMessage{},
		Resources:                       []json.RawMessage{},
	}
	b.step("writing config.json and group.json")
	if err := writeJSON(filepath.Join(b.tmp, "config.json"), cfg, config.ParseConfig, 0o644); err != nil {
		return err
	}
	return writeJSON(filepath.Join(b.tmp, "write/deployment/group/group.json"), group, config.ParseGroup, 0o644)
}

// path is the final absolute path of a bundle file.
func (b *bundle) path(rel string) string { return filepath.Join(b.final, rel) }

func (b *bundle) thing(name, certID string) config.Thing {
	return config.Thing{
		Id:             name,
		ThingArn:       b.arnPrefix + "thing/" + name,
		CertificateArn: b.arnPrefix + "cert/" + certID,
	}
}

func (b *bundle) writeCA(prefix string, ca *pki.CA) error {
	if err := b.writeKey(prefix+".key", ca.Key); err != nil {
		return err
	}
	return writeFile(filepath.Join(b.tmp, prefix+".pem"), pki.EncodeCertificate(ca.Cert), 0o644)
}

// identity creates a key file and a client certificate for a device,
// writes PREFIX.key.pem and PREFIX.cert.pem, and returns the certificate
// ID.
func (b *bundle) identity(ca *pki.CA, prefix, name string) (string, crypto.Signer, error) {
	key, err := b.opts.keyType.Generate()
	if err != nil {
		return "", nil, err
	}
	if err := b.writeKey(prefix+".key.pem", key); err != nil {
		return "", nil, err
	}
	id, err := b.certify(ca, key, prefix, name)
	return id, key, err
}

// certify issues a client certificate for key, writes PREFIX.cert.pem and
// returns the certificate ID.
func (b *bundle) certify(ca *pki.CA, key crypto.Signer, prefix, name string) (string, error) {
	cert, err := ca.Issue(key.Public(), pki.Leaf{
		CommonName: name, Usage: pki.ClientAuth, NotAfter: time.Now().Add(identityValidity),
	})
	if err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(b.tmp, prefix+".cert.pem"), pki.EncodeCertificate(cert), 0o644); err != nil {
		return "", err
	}
	return pki.CertificateID(cert.Raw), nil
}

// where says where the core's keys are made, for progress lines.
func (b *bundle) where() string {
	switch b.opts.keyStore {
	case keyspec.TPM:
		return ", in the TPM " + b.opts.store.tpmDevice
	case keyspec.PKCS11:
		return fmt.Sprintf(", in the token %q", b.opts.store.pkcs11Token)
	}
	return ""
}

// coreKey makes one of the core's keys where --key-store says: a PEM file
// at rel, a TPM key whose TSS2 file is at rel, or a token key labelled
// CORE-role. It returns the key and the reference config.json names it by.
func (b *bundle) coreKey(role, rel string, kt keyspec.Type, u keyspec.Usage) (crypto.Signer, string, error) {
	switch b.opts.keyStore {
	case keyspec.TPM:
		key, err := b.keys.Create(fileURI(filepath.Join(b.tmp, rel)), kt, u)
		return key, fileURI(b.path(rel)), err
	case keyspec.PKCS11:
		ref := b.opts.store.tokenKeyRef(b.opts.core + "-" + role)
		key, err := b.keys.Create(ref, kt, u)
		if err != nil {
			return nil, "", err
		}
		b.created = append(b.created, ref)
		return key, ref, nil
	}
	key, err := kt.Generate()
	if err != nil {
		return nil, "", err
	}
	return key, fileURI(b.path(rel)), b.writeKey(rel, key)
}

// undo destroys the token keys a failed init made; TPM key files go with
// the temporary bundle.
func (b *bundle) undo() {
	for _, ref := range b.created {
		if err := b.keys.Destroy(ref); err != nil {
			b.step("could not remove %s after the failure: %v; remove it by hand", ref, err)
		}
	}
}

// serverCertificate makes the MQTT server key and issues the first
// certificate for it, returning the key's reference; the DCM takes over
// its renewal once it exists (until then: ggprov server-cert).
func (b *bundle) serverCertificate(groupCA *pki.CA) (string, error) {
	key, ref, err := b.coreKey("mqtt-server", "write/dcm/mqtt-server.key.pem", b.opts.serverKeyType, keyspec.Sign)
	if err != nil {
		return "", err
	}
	dns := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		dns = append(dns, h)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	cert, err := issueServerCertificate(groupCA, key.Public(), b.opts.core, addNames(dns, ips, b.opts.names),
		time.Duration(config.DefaultCertificateExpiryMs)*time.Millisecond)
	if err != nil {
		return "", err
	}
	return ref, writeFile(filepath.Join(b.tmp, "write/dcm/mqtt-server.cert.pem"), pki.EncodeCertificate(cert), 0o644)
}

// serverNames are the names an MQTT server certificate is valid for.
type serverNames struct {
	dns []string
	ips []net.IP
}

// addNames adds --server-name values (DNS names or IP addresses) to the
// given names, skipping any already there.
func addNames(dns []string, ips []net.IP, extra []string) serverNames {
	n := serverNames{dns: dns, ips: ips}
	for _, name := range extra {
		if ip := net.ParseIP(name); ip != nil {
			if !slices.ContainsFunc(n.ips, ip.Equal) {
				n.ips = append(n.ips, ip)
			}
		} else if !slices.Contains(n.dns, name) {
			n.dns = append(n.dns, name)
		}
	}
	return n
}

// issueServerCertificate signs an MQTT server certificate for pub with the
// group CA (SHA256-RSA, as v1), valid from now for validity.
func issueServerCertificate(groupCA *pki.CA, pub crypto.PublicKey, core string, names serverNames, validity time.Duration) (*x509.Certificate, error) {
	return groupCA.Issue(pub, pki.Leaf{
		CommonName: core, DNSNames: names.dns, IPs: names.ips,
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(validity),
	})
}

func (b *bundle) writeKey(rel string, key crypto.Signer) error {
	data, err := keys.MarshalPEM(key)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(b.tmp, rel), data, 0o600)
}

func (b *bundle) summary(w io.Writer) {
	fmt.Fprintf(w, "bundle:  %s\n", b.final)
	fmt.Fprintf(w, "config:  %s\n", b.path("config.json"))
	fmt.Fprintf(w, "group:   %s\n", b.path("write/deployment/group/group.json"))
	fmt.Fprintf(w, "core:    %s (%s)\n", b.opts.core, b.path("certs/core.cert.pem"))
	if b.opts.keyStore != keyspec.File {
		fmt.Fprintf(w, "keys:    the core's keys are in %s\n", strings.TrimPrefix(b.where(), ", in "))
	}
	for _, d := range b.opts.devices {
		fmt.Fprintf(w, "device:  %s certificate %s\n", d, b.deviceIDs[d])
	}
	fmt.Fprintf(w, "run:     ggcore --config %s\n", b.path("config.json"))
}

// writeJSON marshals v, checks that parse accepts it, and writes it.
func writeJSON[T any](path string, v any, parse func([]byte) (T, error), mode os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	if _, err := parse(data); err != nil {
		return fmt.Errorf("generated %s is invalid (a ggprov bug): %w", filepath.Base(path), err)
	}
	return writeFile(path, append(data, '\n'), mode)
}

// writeFile writes data durably: a new file, synced before close.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// fileURI is the file:// URI of an absolute path, percent-escaped so that
// a directory named with '%', '#', '?' or a space still names itself.
func fileURI(path string) string { return (&url.URL{Scheme: "file", Path: path}).String() }

// newGroupID returns a random UUID (version 4), the form v1 group IDs took.
func newGroupID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
