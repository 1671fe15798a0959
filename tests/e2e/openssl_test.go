package e2e

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// handshake is the outcome of one openssl s_client run.
type handshake struct {
	ok       bool   // s_client exited 0 and reports a negotiated session
	protocol string // e.g. TLSv1.2
	cipher   string // OpenSSL name, e.g. ECDHE-RSA-AES256-GCM-SHA384
	output   string
}

// With -brief, s_client prints the negotiated session once the handshake
// is over ("CONNECTION ESTABLISHED", "Protocol version: TLSv1.3",
// "Ciphersuite: TLS_AES_128_GCM_SHA256"), and only then, for every
// protocol version; the SSL-Session block of the long form may be missing
// for TLS 1.3 when s_client quits before the session ticket arrives.
var (
	protocolRE = regexp.MustCompile(`(?m)^Protocol version: (\S+)`)
	cipherRE   = regexp.MustCompile(`(?m)^Ciphersuite: (\S+)`)
)

// sClient runs openssl s_client against the core as device dev, with extra
// protocol/cipher options, stdin closed; it reports the negotiated session.
func (f *fleet) sClient(t *testing.T, dev string, opts ...string) handshake {
	t.Helper()
	path := requireTool(t, "openssl")
	args := append([]string{"s_client", "-connect", f.addr(), "-servername", "localhost",
		"-CAfile", f.groupCA(), "-cert", f.certFile(dev), "-key", f.keyFile(dev),
		"-verify_return_error", "-brief"}, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = nil // /dev/null: s_client ends after the handshake
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("openssl %s: still running after 15s:\n%s", strings.Join(args, " "), out)
	}
	h := handshake{output: string(out)}
	if m := protocolRE.FindStringSubmatch(h.output); m != nil {
		h.protocol = m[1]
	}
	if m := cipherRE.FindStringSubmatch(h.output); m != nil {
		h.cipher = m[1]
	}
	h.ok = err == nil && strings.Contains(h.output, "CONNECTION ESTABLISHED") && h.protocol != "" && h.cipher != ""
	return h
}
