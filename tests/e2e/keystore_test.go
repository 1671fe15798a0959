package e2e

//lint:file-ignore SA1019 the test wraps a data key with RSA PKCS #1 v1.5, as Greengrass v1 does, to check each key store decrypts it.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// hardware is the TPM (swtpm) or token (SoftHSM2) a fleet's core keys
// live in, started for one test.
type hardware struct {
	store    string   // --key-store: "tpm" or "pkcs11"
	initArgs []string // the ggprov init options that name it
	token    *testtool.Token
	pinFile  string
}

// newHardware starts a fresh swtpm, or initialises a fresh SoftHSM2 token
// (which sets SOFTHSM2_CONF for the test, so the test cannot be parallel).
func newHardware(t *testing.T, store string) *hardware {
	t.Helper()
	switch store {
	case "tpm":
		sw := testtool.StartSWTPM(t, "unix")
		return &hardware{store: store, initArgs: []string{"--key-store", "tpm", "--tpm-device", sw.Device}}
	case "pkcs11":
		tok := testtool.NewSoftHSMToken(t, "ggcore-e2e", "246810")
		pin := filepath.Join(t.TempDir(), "token.pin")
		if err := os.WriteFile(pin, []byte(tok.PIN+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return &hardware{store: store, token: tok, pinFile: pin, initArgs: []string{"--key-store", "pkcs11",
			"--pkcs11-module", tok.Module, "--pkcs11-token", tok.Label, "--pkcs11-pin-source", "file://" + pin}}
	}
	t.Fatalf("newHardware: unknown store %q", store)
	return nil
}

// openStore opens the fleet's key store as ggcore would, from config.json.
// A swtpm serves one client at a time: close it before ggcore starts.
func openStore(t *testing.T, f *fleet) (*keys.Store, *config.Config) {
	t.Helper()
	cfg, err := config.LoadConfig(f.configPath())
	if err != nil {
		t.Fatal(err)
	}
	s := keys.NewStore(keys.StoreOptions{TPMDevice: cfg.GGCore.TPM.Device, PKCS11: cfg.Crypto.PKCS11})
	t.Cleanup(func() { s.Close() })
	return s, cfg
}

// TestCoreKeysInTPM and TestCoreKeysInToken: with every key of the core in
// a TPM or a PKCS#11 token, devices connect and messages flow over TLS 1.2
// and 1.3, mosquitto and paho alike; the core's identity key works as an
// upstream TLS client key; the SecretsManager key unwraps a data key; 64
// handshakes at once succeed; and no plaintext core key is on disk.
func TestCoreKeysInTPM(t *testing.T) {
	t.Parallel()
	for _, kt := range []string{"ecp256", "rsa2048"} {
		t.Run(kt, func(t *testing.T) {
			t.Parallel()
			testCoreKeysInHardware(t, "tpm", kt)
		})
	}
}

func TestCoreKeysInToken(t *testing.T) {
	// SoftHSM2 is configured through the environment: not parallel.
	for _, kt := range []string{"ecp256", "rsa2048"} {
		t.Run(kt, func(t *testing.T) { testCoreKeysInHardware(t, "pkcs11", kt) })
	}
}

// hardwareFleetRoutes are the MQTT devices of testCoreKeysInHardware,
// each publisher routed to its subscriber on sensors/<publisher>/#: one
// client ID for each connection, so that no connection takes over the
// session of another (the broker may still be tearing down the old
// session of a client ID when the same ID connects again). "sensor" is
// the device of the TLS-only checks.
var hardwareFleetRoutes = []route{
	{"sensor-mosq-tls12", "sensors/sensor-mosq-tls12/#", "display-mosq"},
	{"sensor-mosq-tls13", "sensors/sensor-mosq-tls13/#", "display-mosq"},
	{"sensor-paho-tls12", "sensors/sensor-paho-tls12/#", "display-paho"},
	{"sensor-paho-tls13", "sensors/sensor-paho-tls13/#", "display-paho"},
}

func testCoreKeysInHardware(t *testing.T, store, kt string) {
	h := newHardware(t, store)
	devices := []string{"sensor", "display-mosq", "display-paho"}
	for _, r := range hardwareFleetRoutes {
		devices = append(devices, r.from)
	}
	f := newFleetWith(t, append(h.initArgs, "--key-type", kt, "--server-key-type", kt), devices...)
	assertNoPlaintextCoreKeys(t, f, store)
	f.setRoutes(t, hardwareFleetRoutes...)

	// In-process uses of the keys come first: a swtpm has one client at
	// a time, and ggcore keeps its connection.
	t.Run("upstream client key", func(t *testing.T) { testUpstreamClientKey(t, f) })
	t.Run("secrets envelope", func(t *testing.T) { testSecretsEnvelope(t, f) })

	c := startCore(t, f)
	for _, principal := range []string{"IoTCertificate", "MQTTServerCertificate", "SecretsManager"} {
		want := fmt.Sprintf("principal=%s store=%s", principal, strings.TrimSuffix(store, "2"))
		if !strings.Contains(c.log.String(), want) {
			t.Errorf("ggcore log lacks %q:\n%s", want, c.log)
		}
	}

	t.Run("mosquitto", func(t *testing.T) {
		sub, codes := f.startMosqSub(t, "display-mosq", 1, "sensors/#")
		if len(codes) != 1 || codes[0] != 1 {
			t.Fatalf("SUBACK %v; want [1]", codes)
		}
		defer sub.stop()
		for _, v := range []struct{ option, device string }{{"tlsv1.2", "sensor-mosq-tls12"}, {"tlsv1.3", "sensor-mosq-tls13"}} {
			payload := "reading over " + v.option
			if code, out := f.mosqPub(t, f.identity(v.device), v.device, "sensors/"+v.device+"/t", payload, 1, "--tls-version", v.option); code != 0 {
				t.Fatalf("mosquitto_pub --tls-version %s: exit %d:\n%s", v.option, code, out)
			}
			mqtttest.AssertPayloads(t, sub.Name(), sub.ReceiveUntil(t, payload), payload)
		}
	})

	t.Run("paho", func(t *testing.T) {
		display := f.connect5(t, "display-paho")
		display.MustSubscribe(t, 1, "sensors/#")
		for _, v := range []struct {
			version uint16
			device  string
		}{{tls.VersionTLS12, "sensor-paho-tls12"}, {tls.VersionTLS13, "sensor-paho-tls13"}} {
			cfg := f.clientTLS(t, f.identity(v.device).tlsCertificate(t))
			cfg.MinVersion, cfg.MaxVersion = v.version, v.version
			pub, _, err := f.dial5With(t, cfg, &paho.Connect{ClientID: v.device, CleanStart: true, KeepAlive: 30})
			if err != nil {
				t.Fatalf("%s: %v", tls.VersionName(v.version), err)
			}
			payload := "paho over " + tls.VersionName(v.version)
			pub.MustPublish(t, "sensors/"+v.device+"/t", payload, 1, false)
			mqtttest.AssertPayloads(t, display.Name(), display.ReceiveUntil(t, payload), payload)
		}
	})

	t.Run("openssl", func(t *testing.T) {
		wantKx := map[string]string{"ecp256": "ECDHE-ECDSA-", "rsa2048": "ECDHE-RSA-"}[kt]
		if h := f.sClient(t, "sensor", "-tls1_2"); !h.ok || !strings.HasPrefix(h.cipher, wantKx) {
			t.Errorf("TLS 1.2: ok=%v cipher %q; want a %s suite:\n%s", h.ok, h.cipher, wantKx, h.output)
		}
		if h := f.sClient(t, "sensor", "-tls1_3"); !h.ok {
			t.Errorf("TLS 1.3 handshake failed:\n%s", h.output)
		}
	})

	t.Run("64 handshakes at once", func(t *testing.T) {
		cfg := f.clientTLS(t, f.identity("sensor").tlsCertificate(t))
		cfg.ClientSessionCache = nil // every handshake signs with the server key
		const n = 64
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
				ctx, cancel := context.WithTimeout(context.Background(), 2*testtool.Timeout)
				defer cancel()
				conn, err := d.DialContext(ctx, "tcp", f.addr())
				if err == nil {
					conn.Close()
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		failed := 0
		for err := range errs {
			if err != nil {
				failed++
				t.Log(err)
			}
		}
		if failed > 0 {
			t.Errorf("%d of %d concurrent handshakes failed", failed, n)
		}
	})
}

// assertNoPlaintextCoreKeys: the bundle holds no plaintext private key of
// the core (identity, MQTT server, secrets). In a TPM bundle those files
// are TSS2 (TPM-wrapped) keys; in a token bundle they do not exist. Only
// the CAs' and devices' keys are files.
func assertNoPlaintextCoreKeys(t *testing.T, f *fleet, store string) {
	t.Helper()
	core := map[string]bool{
		filepath.Join(f.dir, "certs", "core.key.pem"):               true,
		filepath.Join(f.dir, "certs", "secrets.key.pem"):            true,
		filepath.Join(f.dir, "write", "dcm", "mqtt-server.key.pem"): true,
	}
	// The CA keys and the devices' keys are files by design.
	allowed := func(path string) bool {
		rel, _ := filepath.Rel(f.dir, path)
		return rel == filepath.Join("certs", "root.ca.key") || rel == filepath.Join("certs", "group-ca.key") ||
			filepath.Dir(rel) == "devices"
	}
	err := filepath.WalkDir(f.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for rest := data; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			plain := strings.HasSuffix(block.Type, "PRIVATE KEY") && block.Type != "TSS2 PRIVATE KEY"
			if plain && !allowed(path) {
				t.Errorf("%s holds a plaintext %s", path, block.Type)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path := range core {
		data, err := os.ReadFile(path)
		switch {
		case store == "pkcs11" && err == nil:
			t.Errorf("%s exists in a token bundle", path)
		case store == "tpm" && err != nil:
			t.Errorf("TPM key file: %v", err)
		case store == "tpm" && !bytes.Contains(data, []byte("-----BEGIN TSS2 PRIVATE KEY-----")):
			t.Errorf("%s is not a TPM-wrapped key:\n%s", path, data)
		}
	}
}

// testUpstreamClientKey connects to a mosquitto that stands in for the
// cloud, with the core's identity key (IoTCertificate) as the TLS client
// key, over TLS 1.2 and 1.3, and publishes and receives a message.
func testUpstreamClientKey(t *testing.T, f *fleet) {
	store, cfg := openStore(t, f)
	key, err := store.Open(cfg.Crypto.Principals.IoTCertificate.PrivateKey)
	if err != nil {
		t.Fatalf("open IoTCertificate key: %v", err)
	}
	chain, err := pki.ReadCertificates(cfg.Crypto.Principals.IoTCertificate.CertificatePath)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{chain[0].Raw}, PrivateKey: key, Leaf: chain[0]}
	up := startUpstream(t, f)
	roots := x509.NewCertPool()
	roots.AddCert(up.ca)
	for _, v := range []struct {
		version  uint16
		clientID string
	}{{tls.VersionTLS12, "core-tls12"}, {tls.VersionTLS13, "core-tls13"}} {
		t.Run(tls.VersionName(v.version), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("with the core's identity key; mosquitto log:\n%s", up.log())
				}
			}()
			tc := tlsconf.Client(roots, "127.0.0.1", func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil })
			tc.MinVersion, tc.MaxVersion = v.version, v.version
			publishToSelf(t, up.addr, tc, v.clientID, "core/up", "upstream over "+tls.VersionName(v.version))
		})
	}
	store.Close()
}

// upstream is a mosquitto standing in for AWS IoT Core: mutual TLS
// against the bundle's identity CA.
type upstream struct {
	addr    string
	ca      *x509.Certificate // signs mosquitto's server certificate
	logFile string
}

func (u *upstream) log() string {
	b, _ := os.ReadFile(u.logFile)
	return string(b)
}

// startUpstream runs mosquitto on a free loopback port, trusting the
// bundle's identity CA for client certificates, with a server
// certificate that CA signs for 127.0.0.1.
func startUpstream(t *testing.T, f *fleet) *upstream {
	t.Helper()
	mosq := requireTool(t, "mosquitto")
	dir := t.TempDir()
	ca := loadAuthority(t, f.rootCA(), f.rootCAKey())
	serverKey, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := ca.Issue(serverKey.Public(), pki.Leaf{CommonName: "upstream", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := keys.MarshalPEM(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pki.EncodeCertificate(serverCert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		u := &upstream{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), ca: ca.Cert,
			logFile: filepath.Join(dir, fmt.Sprintf("mosquitto-%d.log", attempt))}
		conf := []string{
			"persistence false", "allow_anonymous false", "log_dest file " + u.logFile, "log_type all",
			fmt.Sprintf("listener %d 127.0.0.1", port),
			"cafile " + f.rootCA(), "certfile " + certFile, "keyfile " + keyFile,
			"require_certificate true", "use_identity_as_username true",
		}
		if os.Geteuid() == 0 {
			conf = append(conf, "user root") // mosquitto would drop to a user that cannot read the test's files
		}
		confFile := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(confFile, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		proc := testtool.StartProcess(t, exec.Command(mosq, "-c", confFile))
		// mosquitto says "running" once its listener is open, and exits
		// if it cannot open it.
		testtool.Poll(testtool.Timeout, func() bool {
			select {
			case <-proc.Exited():
				return true
			default:
				return strings.Contains(u.log(), " running")
			}
		})
		select {
		case <-proc.Exited():
			if out := proc.Output.String() + u.log(); attempt < 3 && strings.Contains(out, "in use") {
				t.Logf("port %d taken; mosquitto tries another", port)
				continue
			}
			t.Fatalf("mosquitto exited (%v):\n%s\n%s", proc.Err(), proc.Output, u.log())
		default:
		}
		if !strings.Contains(u.log(), " running") {
			t.Fatalf("mosquitto not running on %s within %v:\n%s\n%s", u.addr, testtool.Timeout, proc.Output, u.log())
		}
		return u
	}
}

// publishToSelf connects over TLS as clientID, subscribes to topic,
// publishes payload at QoS 1 and waits for it to come back.
func publishToSelf(t *testing.T, addr string, tc *tls.Config, clientID, topic, payload string) {
	t.Helper()
	c, _, err := mqtttest.Dial(t, addr, tc, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("connect to %s as %s: %v", addr, clientID, err)
	}
	c.MustSubscribe(t, 1, topic)
	c.MustPublish(t, topic, payload, 1, false)
	mqtttest.AssertPayloads(t, clientID, c.ReceiveUntil(t, payload), payload)
}

// testSecretsEnvelope wraps a data key with the SecretsManager public key
// (RSA PKCS#1 v1.5, as v1) and unwraps it inside the TPM or token; the key
// is a decryption key that cannot sign.
func testSecretsEnvelope(t *testing.T, f *fleet) {
	store, cfg := openStore(t, f)
	key, err := store.Open(cfg.Crypto.Principals.SecretsManager.PrivateKey)
	if err != nil {
		t.Fatalf("open SecretsManager key: %v", err)
	}
	if err := keys.CheckKey("SecretsManager", key); err != nil {
		t.Errorf("CheckKey(SecretsManager): %v", err)
	}
	pub, ok := key.Public().(*rsa.PublicKey)
	if !ok {
		t.Fatalf("SecretsManager key is %s, want RSA", keys.Describe(key.Public()))
	}
	dataKey := make([]byte, 32)
	rand.Read(dataKey)
	wrapped, err := rsa.EncryptPKCS1v15(rand.Reader, pub, dataKey)
	if err != nil {
		t.Fatal(err)
	}
	dec, ok := key.(crypto.Decrypter)
	if !ok {
		t.Fatalf("SecretsManager key %T cannot decrypt", key)
	}
	got, err := dec.Decrypt(rand.Reader, wrapped, nil)
	if err != nil {
		t.Fatalf("unwrap the data key: %v", err)
	}
	if !bytes.Equal(got, dataKey) {
		t.Errorf("unwrapped %x, want %x", got, dataKey)
	}
	digest := make([]byte, 32)
	if _, err := key.Sign(rand.Reader, digest, crypto.SHA256); err == nil {
		t.Error("the SecretsManager key signed; a decryption key must not")
	}
	store.Close()
}
