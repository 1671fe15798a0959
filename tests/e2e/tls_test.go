package e2e

import (
	"strings"
	"testing"
)

// Case 7: the TLS profile decides which protocol versions and cipher
// suites a device may use.
func TestTLSProfiles(t *testing.T) {
	t.Parallel()
	type probe struct {
		name     string
		opts     []string
		ok       bool
		protocol string // when ok
		cipher   string // when ok and not ""
	}
	// Debian's OpenSSL needs security level 0 for TLS 1.0/1.1 (MD5-SHA1).
	tls10 := []string{"-tls1", "-cipher", "DEFAULT@SECLEVEL=0"}
	tls11 := []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}
	ecdheCBC := []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"}
	rsaKx := []string{"-tls1_2", "-cipher", "AES128-GCM-SHA256"} // TLS_RSA_WITH_AES_128_GCM_SHA256
	profiles := []struct {
		profile string // "" leaves config.json as ggprov wrote it (strict)
		probes  []probe
	}{
		{"", []probe{
			{name: "TLS 1.3", opts: []string{"-tls1_3"}, ok: true, protocol: "TLSv1.3"},
			{name: "TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384", opts: []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"},
				ok: true, protocol: "TLSv1.2", cipher: "ECDHE-RSA-AES256-GCM-SHA384"},
			{name: "TLS 1.2 RSA key exchange", opts: rsaKx},
			{name: "TLS 1.2 ECDHE with CBC", opts: ecdheCBC},
			{name: "TLS 1.1", opts: tls11},
			{name: "TLS 1.0", opts: tls10},
		}},
		{"compat", []probe{
			{name: "TLS 1.1", opts: tls11, ok: true, protocol: "TLSv1.1"},
			{name: "TLS 1.0", opts: tls10, ok: true, protocol: "TLSv1"},
			{name: "TLS 1.2 ECDHE with CBC", opts: ecdheCBC, ok: true, protocol: "TLSv1.2"},
			{name: "TLS 1.2 RSA key exchange", opts: rsaKx, ok: true, protocol: "TLSv1.2", cipher: "AES128-GCM-SHA256"},
			{name: "TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384", opts: []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"},
				ok: true, protocol: "TLSv1.2", cipher: "ECDHE-RSA-AES256-GCM-SHA384"},
		}},
	}
	for _, p := range profiles {
		name := p.profile
		if name == "" {
			name = "strict (default)"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			requireTool(t, "openssl")
			f := newFleet(t, "dev1")
			if p.profile != "" {
				f.setConfig(t, "ggcore.tlsProfile", p.profile)
			}
			startCore(t, f)
			for _, pr := range p.probes {
				t.Run(pr.name, func(t *testing.T) {
					h := f.sClient(t, "dev1", pr.opts...)
					t.Logf("openssl s_client %s: handshake ok=%t protocol=%q cipher=%q", strings.Join(pr.opts, " "), h.ok, h.protocol, h.cipher)
					switch {
					case pr.ok && !h.ok:
						t.Fatalf("openssl s_client %s: handshake failed; want %s:\n%s", strings.Join(pr.opts, " "), pr.protocol, h.output)
					case !pr.ok && h.ok:
						t.Fatalf("openssl s_client %s: negotiated %s %s; want the handshake refused:\n%s",
							strings.Join(pr.opts, " "), h.protocol, h.cipher, h.output)
					case pr.ok && h.protocol != pr.protocol:
						t.Errorf("negotiated protocol %s; want %s", h.protocol, pr.protocol)
					case pr.ok && pr.cipher != "" && h.cipher != pr.cipher:
						t.Errorf("negotiated cipher %s; want %s", h.cipher, pr.cipher)
					}
				})
			}
		})
	}
}
