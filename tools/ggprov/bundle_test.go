package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"

	"github.com/ggcore/ggcore/internal/testtool"
)

// The bundle's files as plain JSON, read with encoding/json only, so these
// tests check the on-disk format and not core/config's reading of it.
type rawConfig struct {
	CoreThing struct {
		ThingArn    string `json:"thingArn"`
		IotHost     string `json:"iotHost"`
		GGHost      string `json:"ggHost"`
		IotMqttPort int    `json:"iotMqttPort"`
		GGHttpPort  int    `json:"ggHttpPort"`
		GGMqttPort  int    `json:"ggMqttPort"`
		KeepAlive   int    `json:"keepAlive"`
	} `json:"coreThing"`
	Crypto struct {
		CAPath     string `json:"caPath"`
		Principals struct {
			IoTCertificate struct {
				PrivateKeyPath  string `json:"privateKeyPath"`
				CertificatePath string `json:"certificatePath"`
			} `json:"IoTCertificate"`
			MQTTServerCertificate struct {
				PrivateKeyPath string `json:"privateKeyPath"`
			} `json:"MQTTServerCertificate"`
			SecretsManager struct {
				PrivateKeyPath string `json:"privateKeyPath"`
			} `json:"SecretsManager"`
		} `json:"principals"`
	} `json:"crypto"`
	WriteDirectory string `json:"writeDirectory"`
	GGCore         struct {
		TLSProfile    string `json:"tlsProfile"`
		LocalMqttBind string `json:"localMqttBind"`
	} `json:"ggcore"`
}

type rawThing struct {
	Id, ThingArn, CertificateArn string
	SyncShadow                   bool
}

type rawGroup struct {
	GroupId                         string
	GroupVersionId                  string
	CertificateExpiryInMilliseconds int64
	Cores, Devices                  []rawThing
	Subscriptions                   []json.RawMessage
	Functions                       []json.RawMessage
	Resources                       []json.RawMessage
}

func readJSON(t *testing.T, path string, v any) map[string]json.RawMessage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return top
}

// filePath returns the absolute path a file:// URI names; it fails the
// test for anything else.
func filePath(t *testing.T, uri string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "file" || u.Host != "" || !filepath.IsAbs(u.Path) {
		t.Fatalf("%q is not a file:///absolute/path URI", uri)
	}
	return u.Path
}

func readKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	k, err := keys.Open("file://" + path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func samePublic(a crypto.PublicKey, b crypto.PublicKey) bool {
	return a.(interface{ Equal(crypto.PublicKey) bool }).Equal(b)
}

func TestInitConfigAndGroupFormat(t *testing.T) {
	dir := mustInit(t)
	var cfg rawConfig
	top := readJSON(t, filepath.Join(dir, "config.json"), &cfg)
	for _, k := range []string{"coreThing", "crypto", "writeDirectory", "ggcore"} {
		if _, ok := top[k]; !ok {
			t.Errorf("config.json has no %q", k)
		}
	}
	ct := cfg.CoreThing
	if ct.ThingArn != "arn:aws:iot:us-east-1:000000000000:thing/core" || ct.IotHost != "" || ct.GGHost != "" ||
		ct.IotMqttPort != 8883 || ct.GGHttpPort != 8443 || ct.GGMqttPort != 8883 || ct.KeepAlive != 600 {
		t.Errorf("coreThing = %+v, want the bundle of docs/design.md, with no iotHost and ggHost until ggprov register", ct)
	}
	p := cfg.Crypto.Principals
	wantPaths := map[string]string{
		"caPath":                               filepath.Join(dir, "certs/root.ca.pem"),
		"IoTCertificate.privateKeyPath":        filepath.Join(dir, "certs/core.key.pem"),
		"IoTCertificate.certificatePath":       filepath.Join(dir, "certs/core.cert.pem"),
		"MQTTServerCertificate.privateKeyPath": filepath.Join(dir, "write/dcm/mqtt-server.key.pem"),
		"SecretsManager.privateKeyPath":        filepath.Join(dir, "certs/secrets.key.pem"),
	}
	gotURIs := map[string]string{
		"caPath":                               cfg.Crypto.CAPath,
		"IoTCertificate.privateKeyPath":        p.IoTCertificate.PrivateKeyPath,
		"IoTCertificate.certificatePath":       p.IoTCertificate.CertificatePath,
		"MQTTServerCertificate.privateKeyPath": p.MQTTServerCertificate.PrivateKeyPath,
		"SecretsManager.privateKeyPath":        p.SecretsManager.PrivateKeyPath,
	}
	for field, want := range wantPaths {
		if got := filePath(t, gotURIs[field]); got != want {
			t.Errorf("%s names %s, want %s", field, got, want)
		}
		if _, err := os.Stat(want); err != nil {
			t.Errorf("%s: %v", field, err)
		}
	}
	if cfg.WriteDirectory != filepath.Join(dir, "write") {
		t.Errorf("writeDirectory %q, want the absolute %s", cfg.WriteDirectory, filepath.Join(dir, "write"))
	}
	if cfg.GGCore.TLSProfile != "strict" || cfg.GGCore.LocalMqttBind != "127.0.0.1" {
		t.Errorf("ggcore = %+v", cfg.GGCore)
	}

	var g rawGroup
	gtop := readJSON(t, filepath.Join(dir, "write/deployment/group/group.json"), &g)
	for _, k := range []string{"Subscriptions", "Functions", "Resources"} {
		if s := string(gtop[k]); s != "[]" {
			t.Errorf("group.json %s = %s, want []", k, s)
		}
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(g.GroupId) {
		t.Errorf("GroupId %q is not UUID-like", g.GroupId)
	}
	if g2 := mustInit(t); true {
		var other rawGroup
		readJSON(t, filepath.Join(g2, "write/deployment/group/group.json"), &other)
		if other.GroupId == g.GroupId {
			t.Error("two bundles got the same GroupId")
		}
	}
	if g.GroupVersionId != "1" || g.CertificateExpiryInMilliseconds != 604800000 {
		t.Errorf("GroupVersionId %q, CertificateExpiryInMilliseconds %d", g.GroupVersionId, g.CertificateExpiryInMilliseconds)
	}
	check := func(th rawThing, certPath string) {
		t.Helper()
		cert := readCert(t, certPath)
		arn := "arn:aws:iot:us-east-1:000000000000:"
		if th.ThingArn != arn+"thing/"+th.Id || th.CertificateArn != arn+"cert/"+pki.CertificateID(cert.Raw) {
			t.Errorf("%s: ThingArn %s CertificateArn %s; certificate ID %s", th.Id, th.ThingArn, th.CertificateArn, pki.CertificateID(cert.Raw))
		}
		if cert.Subject.CommonName != th.Id {
			t.Errorf("%s: certificate CN %q", th.Id, cert.Subject.CommonName)
		}
	}
	if len(g.Cores) != 1 || g.Cores[0].Id != "core" {
		t.Fatalf("Cores = %+v", g.Cores)
	}
	check(g.Cores[0], filepath.Join(dir, "certs/core.cert.pem"))
	if len(g.Devices) != 2 || g.Devices[0].Id != "dev1" || g.Devices[1].Id != "dev2" {
		t.Fatalf("Devices = %+v", g.Devices)
	}
	for _, d := range g.Devices {
		check(d, filepath.Join(dir, "devices", d.Id+".cert.pem"))
	}
}

func TestInitOptionsReachTheBundle(t *testing.T) {
	dir := mustInit(t, "--mqtt-port", "18883", "--bind", "0.0.0.0", "--region", "eu-west-1", "--account", "123456789012")
	var cfg rawConfig
	readJSON(t, filepath.Join(dir, "config.json"), &cfg)
	if cfg.CoreThing.GGMqttPort != 18883 || cfg.GGCore.LocalMqttBind != "0.0.0.0" ||
		cfg.CoreThing.ThingArn != "arn:aws:iot:eu-west-1:123456789012:thing/core" {
		t.Errorf("config.json: port %d bind %q arn %s", cfg.CoreThing.GGMqttPort, cfg.GGCore.LocalMqttBind, cfg.CoreThing.ThingArn)
	}
	var g rawGroup
	readJSON(t, filepath.Join(dir, "write/deployment/group/group.json"), &g)
	for _, th := range append(g.Cores, g.Devices...) {
		if !strings.HasPrefix(th.ThingArn, "arn:aws:iot:eu-west-1:123456789012:thing/") ||
			!strings.HasPrefix(th.CertificateArn, "arn:aws:iot:eu-west-1:123456789012:cert/") {
			t.Errorf("%s: ARNs %s %s", th.Id, th.ThingArn, th.CertificateArn)
		}
	}
}

// TestInitKeysMatchCertificatesAndPrincipals: every key opens through the
// reference config.json gives it, suits its principal, and belongs to the
// certificate beside it; with an RSA core key SecretsManager reuses it.
func TestInitKeysMatchCertificatesAndPrincipals(t *testing.T) {
	for _, keyType := range []string{"ecp256", "rsa2048"} {
		t.Run(keyType, func(t *testing.T) {
			dir := mustInit(t, "--key-type", keyType)
			var cfg rawConfig
			readJSON(t, filepath.Join(dir, "config.json"), &cfg)
			p := cfg.Crypto.Principals
			for principal, ref := range map[string]string{
				"IoTCertificate":        p.IoTCertificate.PrivateKeyPath,
				"MQTTServerCertificate": p.MQTTServerCertificate.PrivateKeyPath,
				"SecretsManager":        p.SecretsManager.PrivateKeyPath,
			} {
				k, err := keys.Open(ref)
				if err != nil {
					t.Fatalf("%s: %v", principal, err)
				}
				if err := keys.CheckPrincipal(principal, k.Public()); err != nil {
					t.Errorf("%v", err)
				}
			}
			_, secretsErr := os.Stat(filepath.Join(dir, "certs/secrets.key.pem"))
			if keyType == "rsa2048" {
				if secretsErr == nil || p.SecretsManager.PrivateKeyPath != p.IoTCertificate.PrivateKeyPath {
					t.Errorf("RSA core key: SecretsManager %s, secrets.key.pem exists %v; want the core key and no extra key",
						p.SecretsManager.PrivateKeyPath, secretsErr == nil)
				}
			} else if secretsErr != nil {
				t.Errorf("EC core key: %v", secretsErr)
			}
			pairs := map[string]string{
				"certs/core.key.pem":            "certs/core.cert.pem",
				"devices/dev1.key.pem":          "devices/dev1.cert.pem",
				"devices/dev2.key.pem":          "devices/dev2.cert.pem",
				"write/dcm/mqtt-server.key.pem": "write/dcm/mqtt-server.cert.pem",
				"certs/root.ca.key":             "certs/root.ca.pem",
				"certs/group-ca.key":            "certs/group-ca.pem",
			}
			for key, cert := range pairs {
				if !samePublic(readKey(t, filepath.Join(dir, key)).Public(), readCert(t, filepath.Join(dir, cert)).PublicKey) {
					t.Errorf("%s does not belong to %s", key, cert)
				}
			}
			core := readCert(t, filepath.Join(dir, "certs/core.cert.pem")).PublicKey
			if _, isRSA := core.(*rsa.PublicKey); isRSA != (keyType == "rsa2048") {
				t.Errorf("core key %T for --key-type %s", core, keyType)
			}
			if _, isEC := core.(*ecdsa.PublicKey); isEC != (keyType == "ecp256") {
				t.Errorf("core key %T for --key-type %s", core, keyType)
			}
		})
	}
}

func TestInitCertificateProfiles(t *testing.T) {
	dir := mustInit(t)
	day := 24 * time.Hour
	tests := []struct {
		path     string
		validity time.Duration
		isCA     bool
		issuer   string // certificate file of the issuer
		rsaKey   bool
	}{
		{"certs/root.ca.pem", 20 * 365 * day, true, "certs/root.ca.pem", true},
		{"certs/group-ca.pem", 20 * 365 * day, true, "certs/group-ca.pem", true},
		{"certs/core.cert.pem", 10 * 365 * day, false, "certs/root.ca.pem", false},
		{"devices/dev1.cert.pem", 10 * 365 * day, false, "certs/root.ca.pem", false},
		{"write/dcm/mqtt-server.cert.pem", 7 * day, false, "certs/group-ca.pem", true},
	}
	for _, tt := range tests {
		c := readCert(t, filepath.Join(dir, tt.path))
		issuer := readCert(t, filepath.Join(dir, tt.issuer))
		if err := c.CheckSignatureFrom(issuer); err != nil {
			t.Errorf("%s: not signed by %s: %v", tt.path, tt.issuer, err)
		}
		if c.SignatureAlgorithm != x509.SHA256WithRSA {
			t.Errorf("%s: signature %v, want SHA256-RSA", tt.path, c.SignatureAlgorithm)
		}
		if got := c.NotAfter.Sub(c.NotBefore); got < tt.validity || got > tt.validity+time.Hour {
			t.Errorf("%s: valid for %s, want %s", tt.path, got, tt.validity)
		}
		if c.IsCA != tt.isCA {
			t.Errorf("%s: IsCA %v", tt.path, c.IsCA)
		}
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok != tt.rsaKey || (ok && pub.N.BitLen() != 2048) {
			t.Errorf("%s: key %T", tt.path, c.PublicKey)
		}
		if !c.NotAfter.Before(issuer.NotAfter.Add(time.Second)) {
			t.Errorf("%s outlives its CA", tt.path)
		}
	}
	server := readCert(t, filepath.Join(dir, "write/dcm/mqtt-server.cert.pem"))
	names := append([]string{}, server.DNSNames...)
	for _, ip := range server.IPAddresses {
		names = append(names, ip.String())
	}
	want := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		want = append(want, h)
	}
	for _, w := range want {
		if !contains(names, w) {
			t.Errorf("MQTT server certificate names %v, lacks %s", names, w)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestInitBundleServesMutualTLS makes the TLS connection ggcore and a
// device will make, with nothing but the bundle's files: the device
// trusts the group CA, the server trusts the identity CA.
func TestInitBundleServesMutualTLS(t *testing.T) {
	dir := mustInit(t)
	pool := func(path string) *x509.CertPool {
		p := x509.NewCertPool()
		p.AddCert(readCert(t, filepath.Join(dir, path)))
		return p
	}
	pair := func(cert, key string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, cert), filepath.Join(dir, key))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	serverCert := pair("write/dcm/mqtt-server.cert.pem", "write/dcm/mqtt-server.key.pem")
	tests := []struct {
		name       string
		serverName string
		max        uint16
		suites     []uint16
	}{
		{"TLS 1.3 localhost", "localhost", tls.VersionTLS13, nil},
		{"TLS 1.3 ::1", "::1", tls.VersionTLS13, nil},
		{"TLS 1.2 ECDHE-RSA-AES256-GCM", "127.0.0.1", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c1, c2 := net.Pipe()
			server := tls.Server(c1, &tls.Config{
				Certificates: []tls.Certificate{serverCert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool("certs/root.ca.pem"),
				MinVersion:   tls.VersionTLS12,
				CipherSuites: tt.suites,
			})
			client := tls.Client(c2, &tls.Config{
				Certificates: []tls.Certificate{pair("devices/dev1.cert.pem", "devices/dev1.key.pem")},
				RootCAs:      pool("certs/group-ca.pem"),
				ServerName:   tt.serverName,
				MaxVersion:   tt.max,
			})
			done := make(chan error, 1)
			go func() { done <- server.Handshake() }()
			if err := client.Handshake(); err != nil {
				t.Fatalf("device handshake: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("server handshake: %v", err)
			}
			peer := server.ConnectionState().PeerCertificates
			if len(peer) == 0 || peer[0].Subject.CommonName != "dev1" {
				t.Errorf("server sees peer %v", peer)
			}
			// Close the pipe, not the TLS conns: close_notify on an unread
			// net.Pipe would wait for its write deadline.
			c1.Close()
			c2.Close()
		})
	}
}

// TestInitBundleReadByOpenSSL: mosquitto and openssl-based clients must
// load every key and verify every chain of the bundle.
func TestInitBundleReadByOpenSSL(t *testing.T) {
	openssl := testtool.Require(t, "openssl")
	dir := mustInit(t)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Errorf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, k := range []string{"certs/root.ca.key", "certs/group-ca.key", "certs/core.key.pem", "certs/secrets.key.pem",
		"devices/dev1.key.pem", "devices/dev2.key.pem", "write/dcm/mqtt-server.key.pem"} {
		run("pkey", "-in", filepath.Join(dir, k), "-check", "-noout")
	}
	root := filepath.Join(dir, "certs/root.ca.pem")
	for _, c := range []string{"certs/core.cert.pem", "devices/dev1.cert.pem", "devices/dev2.cert.pem"} {
		run("verify", "-CAfile", root, "-purpose", "sslclient", filepath.Join(dir, c))
	}
	run("verify", "-CAfile", filepath.Join(dir, "certs/group-ca.pem"), "-purpose", "sslserver", "-verify_hostname", "localhost",
		filepath.Join(dir, "write/dcm/mqtt-server.cert.pem"))
}

func TestInitOutput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bundle")
	code, stdout, stderr := ggprov("init", "--dir", dir, "--core", "core", "--device", "dev1", "--device", "dev2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr == "" {
		t.Error("no progress on stderr")
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.HasPrefix(line, "ggprov: ") || len(line) > 120 {
			t.Errorf("progress line %q: want short lines starting ggprov:", line)
		}
	}
	var g rawGroup
	readJSON(t, filepath.Join(dir, "write/deployment/group/group.json"), &g)
	for _, d := range g.Devices {
		id := d.CertificateArn[strings.LastIndex(d.CertificateArn, "/")+1:]
		if !strings.Contains(stdout, d.Id) || !strings.Contains(stdout, id) {
			t.Errorf("summary does not give %s's certificate ID %s:\n%s", d.Id, id, stdout)
		}
	}
	for _, p := range []string{filepath.Join(dir, "config.json"), filepath.Join(dir, "write/deployment/group/group.json")} {
		if !strings.Contains(stdout, p) {
			t.Errorf("summary does not name %s:\n%s", p, stdout)
		}
	}
}

func TestInitIntoEmptyExistingDir(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := ggprov("init", "--dir", dir, "--core", "core", "--device", "dev1"); code != 0 {
		t.Fatalf("empty existing --dir refused: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("%d entries beside the bundle; the temporary directory was left behind", len(entries))
	}
}

func TestInitMoreRefusals(t *testing.T) {
	long := strings.Repeat("a", 129)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no dir", []string{"init", "--core", "core", "--device", "a"}, "ggprov: init: --dir is required\n"},
		{"two problems, one line each", []string{"init", "--core", "core"}, "ggprov: init: --dir is required\nggprov: at least one --device is required\n"},
		{"no core", []string{"init", "--dir", "D", "--device", "a"}, "--core"},
		{"name too long", []string{"init", "--dir", "D", "--core", "core", "--device", long}, long},
		{"empty name", []string{"init", "--dir", "D", "--core", "core", "--device", ""}, `--device ""`},
		{"path in name", []string{"init", "--dir", "D", "--core", "core", "--device", "../x"}, `--device "../x"`},
		{"pkcs11 without its token", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "--key-store", "pkcs11"},
			"--pkcs11-module \"\": want the absolute path of the PKCS#11 module"},
		{"pkcs11 without a PIN source", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "--key-store", "pkcs11",
			"--pkcs11-module", "/usr/lib/softhsm/libsofthsm2.so", "--pkcs11-token", "gg"}, "--pkcs11-pin-source"},
		{"bad TPM device", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "--key-store", "tpm",
			"--tpm-device", "http://tpm"}, "--tpm-device"},
		{"bad server key type", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "--server-key-type", "dsa"}, "--server-key-type"},
		{"unknown key store", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "--key-store", "vault"}, "--key-store: unknown key store \"vault\": want one of file, tpm, pkcs11"},
		{"bad bind", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "--bind", "example.com"}, "--bind"},
		{"bad account", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "--account", "12"}, "--account"},
		{"bad region", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "--region", "mars"}, "--region"},
		{"unknown flag", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "--colour"}, "colour"},
		{"stray argument", []string{"init", "--dir", "D", "--core", "core", "--device", "a", "extra"}, `"extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			args := append([]string{}, tt.args...)
			for i, a := range args {
				if a == "D" {
					args[i] = filepath.Join(parent, "bundle")
				}
			}
			code, stdout, stderr := ggprov(args...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want a failure mentioning %q", code, stderr, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q on failure", stdout)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("left %d entries behind", len(entries))
			}
		})
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"no arguments", nil, 2, "", "ggprov init --dir DIR"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"-h", []string{"-h"}, 0, "ggprov init", ""},
		{"init -h", []string{"init", "-h"}, 0, "-key-type", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := ggprov(tt.args...)
			if code != tt.code || !strings.Contains(stdout, tt.inStdout) || !strings.Contains(stderr, tt.inStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, %q on stdout and %q on stderr",
					code, stdout, stderr, tt.code, tt.inStdout, tt.inStderr)
			}
		})
	}
}

// TestInitDirWithURISpecialCharacters: config.json's file:// URIs must
// name the bundle's files even when DIR holds characters a URI escapes.
func TestInitDirWithURISpecialCharacters(t *testing.T) {
	for _, name := range []string{"my bundle", "100%41", "a#b", "a?b"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			if code, _, stderr := ggprov("init", "--dir", dir, "--core", "core", "--device", "dev1"); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var cfg rawConfig
			readJSON(t, filepath.Join(dir, "config.json"), &cfg)
			p := cfg.Crypto.Principals
			for _, ref := range []string{p.IoTCertificate.PrivateKeyPath, p.MQTTServerCertificate.PrivateKeyPath, p.SecretsManager.PrivateKeyPath} {
				if _, err := keys.Open(ref); err != nil {
					t.Errorf("%s: %v", ref, err)
				}
			}
			for _, uri := range []string{cfg.Crypto.CAPath, p.IoTCertificate.CertificatePath} {
				if _, err := os.Stat(filePath(t, uri)); err != nil {
					t.Errorf("%s: %v", uri, err)
				}
			}
		})
	}
}
