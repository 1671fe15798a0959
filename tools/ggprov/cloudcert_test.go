package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// certNames lists a certificate's DNS names and IP addresses as strings.
func certNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	slices.Sort(names)
	return names
}

func TestGGCloudCert(t *testing.T) {
	tests := []struct {
		name  string
		hosts []string
		want  []string // sorted
	}{
		{"default names", nil, []string{"127.0.0.1", "localhost"}},
		{"given names only", []string{"ggcloud.example.net", "192.0.2.7", "::1"}, []string{"192.0.2.7", "::1", "ggcloud.example.net"}},
		{"one name", []string{"cloud.lan"}, []string{"cloud.lan"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := mustInit(t)
			args := []string{"ggcloud-cert", "--dir", dir}
			for _, h := range tt.hosts {
				args = append(args, "--host", h)
			}
			code, stdout, stderr := ggprov(args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			certPath := filepath.Join(dir, "ggcloud", "server.cert.pem")
			keyPath := filepath.Join(dir, "ggcloud", "server.key.pem")
			if !strings.Contains(stdout, certPath) || !strings.Contains(stdout, "valid until") {
				t.Errorf("stdout %q does not name %s and its validity", stdout, certPath)
			}
			info, err := os.Stat(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if mode := info.Mode().Perm(); mode != 0o600 {
				t.Errorf("server.key.pem mode %o, want 600", mode)
			}

			cert := readCert(t, certPath)
			if got := certNames(cert); !slices.Equal(got, tt.want) {
				t.Errorf("names %q, want exactly %q", got, tt.want)
			}
			roots := x509.NewCertPool()
			roots.AddCert(readCert(t, filepath.Join(dir, "certs", "root.ca.pem")))
			for _, name := range tt.want {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
					t.Errorf("for %s: does not verify against the bundle's root CA as a server: %v", name, err)
				}
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || cert.IsCA {
				t.Errorf("ExtKeyUsage %v, IsCA %v; want server auth only, not a CA", cert.ExtKeyUsage, cert.IsCA)
			}
			// Not the group CA: devices must not take ggcloud for a core.
			groupCA := x509.NewCertPool()
			groupCA.AddCert(readCert(t, filepath.Join(dir, "certs", "group-ca.pem")))
			if _, err := cert.Verify(x509.VerifyOptions{Roots: groupCA, DNSName: tt.want[0]}); err == nil {
				t.Error("the ggcloud certificate chains to the group CA")
			}
			if d := time.Until(cert.NotAfter); d < 364*24*time.Hour || d > 366*24*time.Hour {
				t.Errorf("valid for another %s, want a year", d)
			}
			key := readKey(t, keyPath)
			if !samePublic(key.Public(), cert.PublicKey) {
				t.Error("server.key.pem does not belong to server.cert.pem")
			}
			if ec, ok := key.Public().(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() {
				t.Errorf("key %T, want EC P-256", key.Public())
			}
		})
	}
}

// TestGGCloudCertRefusesToReplace: a second run, even with other names,
// is refused and leaves both files as they were; so is a run with only
// one of the two files left.
func TestGGCloudCertRefusesToReplace(t *testing.T) {
	dir := mustInit(t)
	if code, _, stderr := ggprov("ggcloud-cert", "--dir", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	certPath := filepath.Join(dir, "ggcloud", "server.cert.pem")
	keyPath := filepath.Join(dir, "ggcloud", "server.key.pem")
	read := func(p string) []byte {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cert, key := read(certPath), read(keyPath)
	for _, args := range [][]string{
		{"ggcloud-cert", "--dir", dir},
		{"ggcloud-cert", "--dir", dir, "--host", "other.example"},
	} {
		code, stdout, stderr := ggprov(args...)
		if code != 1 || !strings.Contains(stderr, "exists") || !strings.Contains(stderr, "server.") {
			t.Errorf("%v: exit %d, stderr %q; want 1 naming the existing file", args, code, stderr)
		}
		if stdout != "" {
			t.Errorf("%v: stdout %q on refusal", args, stdout)
		}
		if !bytes.Equal(read(certPath), cert) || !bytes.Equal(read(keyPath), key) {
			t.Fatalf("%v changed the certificate or key", args)
		}
	}
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := ggprov("ggcloud-cert", "--dir", dir); code != 1 || !strings.Contains(stderr, keyPath) {
		t.Errorf("key left alone: exit %d, stderr %q; want 1 naming %s", code, stderr, keyPath)
	}
	if !bytes.Equal(read(keyPath), key) {
		t.Error("the lone key was replaced")
	}
	if _, err := os.Stat(certPath); err == nil {
		t.Error("a certificate was written beside the old key")
	}
}

func TestGGCloudCertRefusals(t *testing.T) {
	dir := mustInit(t)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing --dir", []string{}, 2, "--dir is required"},
		{"bad host", []string{"--dir", dir, "--host", "bad host"}, 2, `--host "bad host"`},
		{"empty host", []string{"--dir", dir, "--host", ""}, 2, `--host ""`},
		{"URL as host", []string{"--dir", dir, "--host", "https://ggcloud"}, 2, `--host "https://ggcloud"`},
		{"one bad among good", []string{"--dir", dir, "--host", "127.0.0.1", "--host", "a_b c"}, 2, `"a_b c"`},
		{"unknown flag", []string{"--dir", dir, "--hostname", "x"}, 2, "hostname"},
		{"not a bundle", []string{"--dir", filepath.Join(dir, "nope")}, 1, "root CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := ggprov(append([]string{"ggcloud-cert"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q on failure", stdout)
			}
			if _, err := os.Stat(filepath.Join(dir, "ggcloud")); err == nil {
				t.Error("a refused run created DIR/ggcloud")
			}
		})
	}
}
