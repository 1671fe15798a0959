package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
)

// ggprov runs the command in-process and returns its exit status and output.
func ggprov(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustInit(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	args := append([]string{"init", "--dir", dir, "--core", "core", "--device", "dev1", "--device", "dev2"}, extra...)
	if code, _, stderr := ggprov(args...); code != 0 {
		t.Fatalf("ggprov init: exit %d: %s", code, stderr)
	}
	return dir
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := pki.ReadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestInitWritesAWorkingBundle(t *testing.T) {
	dir := mustInit(t)
	modes := map[string]os.FileMode{
		"config.json": 0o644, "certs": 0o700, "write": 0o700,
		"certs/root.ca.pem": 0o644, "certs/root.ca.key": 0o600,
		"certs/group-ca.pem": 0o644, "certs/group-ca.key": 0o600,
		"certs/core.cert.pem": 0o644, "certs/core.key.pem": 0o600, "certs/secrets.key.pem": 0o600,
		"devices/dev1.cert.pem": 0o644, "devices/dev1.key.pem": 0o600,
		"devices/dev2.cert.pem": 0o644, "devices/dev2.key.pem": 0o600,
		"write/dcm/mqtt-server.cert.pem": 0o644, "write/dcm/mqtt-server.key.pem": 0o600,
		"write/deployment/group/group.json": 0o644,
	}
	for rel, want := range modes {
		info, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", rel, got, want)
		}
	}

	cfg, err := config.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatalf("config.json: %v", err)
	}
	g, err := config.LoadGroup(cfg.GroupPath())
	if err != nil {
		t.Fatalf("group.json: %v", err)
	}
	if cfg.CoreThing.ThingName != "core" || cfg.GGCore.LocalMQTTBind != "127.0.0.1" {
		t.Errorf("config: thing %q bind %q", cfg.CoreThing.ThingName, cfg.GGCore.LocalMQTTBind)
	}
	if len(g.Subscriptions) != 0 || len(g.Devices) != 2 || g.Core().Name() != "core" {
		t.Errorf("group: %d subscriptions, %d devices, core %q", len(g.Subscriptions), len(g.Devices), g.Core().Name())
	}

	root := x509.NewCertPool()
	root.AddCert(readCert(t, filepath.Join(dir, "certs/root.ca.pem")))
	for _, d := range g.Devices {
		cert := readCert(t, filepath.Join(dir, "devices", d.Name()+".cert.pem"))
		if _, err := cert.Verify(x509.VerifyOptions{Roots: root, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: does not chain to the identity CA: %v", d.Name(), err)
		}
		if id := pki.CertificateID(cert.Raw); id != d.CertificateID() {
			t.Errorf("%s: group.json certificate ID %s, certificate has %s", d.Name(), d.CertificateID(), id)
		}
		if _, isEC := cert.PublicKey.(*ecdsa.PublicKey); !isEC {
			t.Errorf("%s: default key is %T, want EC P-256", d.Name(), cert.PublicKey)
		}
	}

	group := x509.NewCertPool()
	group.AddCert(readCert(t, filepath.Join(dir, "certs/group-ca.pem")))
	server := readCert(t, cfg.ServerCertPath())
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: group, DNSName: name}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	if _, isRSA := server.PublicKey.(*rsa.PublicKey); !isRSA || server.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("server certificate: key %T signed %v, want RSA signed SHA256-RSA", server.PublicKey, server.SignatureAlgorithm)
	}
	signer, err := keys.Open(cfg.Crypto.Principals.MQTTServerCertificate.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if !signer.Public().(*rsa.PublicKey).Equal(server.PublicKey) {
		t.Error("MQTT server key does not match its certificate")
	}
}

func TestInitServerNames(t *testing.T) {
	dir := mustInit(t, "--server-name", "gw1.example.net", "--server-name", "192.168.7.2")
	group := x509.NewCertPool()
	group.AddCert(readCert(t, filepath.Join(dir, "certs/group-ca.pem")))
	server := readCert(t, filepath.Join(dir, "write/dcm/mqtt-server.cert.pem"))
	for _, name := range []string{"gw1.example.net", "192.168.7.2", "localhost"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: group, DNSName: name}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	if code, _, stderr := ggprov("init", "--dir", filepath.Join(t.TempDir(), "b"), "--core", "c", "--device", "d", "--server-name", "bad name"); code != 2 || !strings.Contains(stderr, `--server-name "bad name"`) {
		t.Errorf("bad --server-name: exit %d: %s", code, stderr)
	}
}

func TestServerCertRenews(t *testing.T) {
	dir := mustInit(t)
	path := filepath.Join(dir, "write/dcm/mqtt-server.cert.pem")
	before := readCert(t, path)
	if code, out, stderr := ggprov("server-cert", "--dir", dir, "--server-name", "gw1.lan"); code != 0 || !strings.Contains(out, "valid until") {
		t.Fatalf("exit %d: %s%s", code, out, stderr)
	}
	after := readCert(t, path)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("certificate not re-issued")
	}
	if !after.PublicKey.(*rsa.PublicKey).Equal(before.PublicKey) {
		t.Error("renewal changed the key")
	}
	group := x509.NewCertPool()
	group.AddCert(readCert(t, filepath.Join(dir, "certs/group-ca.pem")))
	for _, name := range []string{"localhost", "127.0.0.1", "gw1.lan"} {
		if _, err := after.Verify(x509.VerifyOptions{Roots: group, DNSName: name}); err != nil {
			t.Errorf("renewed certificate for %s: %v", name, err)
		}
	}
	if code, _, _ := ggprov("server-cert", "--dir", filepath.Join(dir, "nope")); code != 1 {
		t.Errorf("missing bundle: exit %d, want 1", code)
	}
}

func TestInitKeyTypes(t *testing.T) {
	tests := []struct {
		keyType string
		check   func(any) bool
	}{
		{"rsa3072", func(k any) bool { r, ok := k.(*rsa.PublicKey); return ok && r.N.BitLen() == 3072 }},
		{"ecp384", func(k any) bool { e, ok := k.(*ecdsa.PublicKey); return ok && e.Curve == elliptic.P384() }},
	}
	for _, tt := range tests {
		t.Run(tt.keyType, func(t *testing.T) {
			dir := mustInit(t, "--key-type", tt.keyType)
			for _, p := range []string{"certs/core.cert.pem", "devices/dev1.cert.pem"} {
				if k := readCert(t, filepath.Join(dir, p)).PublicKey; !tt.check(k) {
					t.Errorf("%s: key %T is not %s", p, k, tt.keyType)
				}
			}
		})
	}
}

func TestInitRefusesBadInputAndWritesNothing(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no device", []string{"--core", "core"}, 2, "at least one --device"},
		{"duplicate device", []string{"--core", "core", "--device", "a", "--device", "a"}, 2, `--device "a": given twice`},
		{"device named like the core", []string{"--core", "core", "--device", "core"}, 2, "the core's name"},
		{"bad name", []string{"--core", "core", "--device", "a/b"}, 2, `--device "a/b"`},
		{"bad key type", []string{"--core", "core", "--device", "a", "--key-type", "rsa1024"}, 2, "unknown key type"},
		{"TPM unreachable", []string{"--core", "core", "--device", "a", "--key-store", "tpm", "--tpm-device", "unix:///nonexistent/tpm.sock"}, 1,
			"unix:///nonexistent/tpm.sock"},
		{"bad port", []string{"--core", "core", "--device", "a", "--mqtt-port", "70000"}, 2, "--mqtt-port 70000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "bundle")
			code, _, stderr := ggprov(append([]string{"init", "--dir", dir}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("left %d entries behind", len(entries))
			}
		})
	}
}

func TestInitRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := ggprov("init", "--dir", dir, "--core", "core", "--device", "a")
	if code != 1 || !strings.Contains(stderr, "exists and is not empty") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory changed: %d entries", len(entries))
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("temporary bundle left beside it: %d entries", len(entries))
	}
}

func TestSubscriptionAdd(t *testing.T) {
	dir := mustInit(t)
	groupPath := filepath.Join(dir, "write/deployment/group/group.json")
	if code, _, stderr := ggprov("subscription", "add", "--dir", dir, "--source", "dev1", "--subject", "a/#", "--target", "dev2"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if code, _, stderr := ggprov("subscription", "add", "--dir", dir, "--source", "dev2", "--subject", "b", "--target", "cloud"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	g, err := config.LoadGroup(groupPath)
	if err != nil {
		t.Fatal(err)
	}
	want := []config.Subscription{
		{Id: "s1", Source: "arn:aws:iot:us-east-1:000000000000:thing/dev1", Subject: "a/#", Target: "arn:aws:iot:us-east-1:000000000000:thing/dev2"},
		{Id: "s2", Source: "arn:aws:iot:us-east-1:000000000000:thing/dev2", Subject: "b", Target: "cloud"},
	}
	if len(g.Subscriptions) != 2 || g.Subscriptions[0] != want[0] || g.Subscriptions[1] != want[1] {
		t.Fatalf("subscriptions %+v, want %+v", g.Subscriptions, want)
	}
	before, _ := os.ReadFile(groupPath)
	for _, args := range [][]string{
		{"--source", "nobody", "--subject", "a", "--target", "dev2"},
		{"--source", "dev1", "--subject", "a/#/b", "--target", "dev2"},
		{"--source", "dev1", "--subject", "a", "--target", "dev1"},
		{"--id", "s1", "--source", "dev1", "--subject", "a", "--target", "dev2"},
	} {
		code, _, stderr := ggprov(append([]string{"subscription", "add", "--dir", dir}, args...)...)
		if code == 0 {
			t.Errorf("%v accepted", args)
		}
		if stderr == "" {
			t.Errorf("%v: no error message", args)
		}
	}
	if after, _ := os.ReadFile(groupPath); !bytes.Equal(before, after) {
		t.Error("a refused subscription changed group.json")
	}
}
