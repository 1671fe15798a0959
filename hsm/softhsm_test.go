//go:build cgo

package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/ggcore/ggcore/internal/testtool"
)

// openToken initialises a fresh SoftHSM2 token and logs in to it. The
// module is closed (finalised) when the test ends, so that the next
// test's C_Initialize reads that test's SOFTHSM2_CONF.
func openToken(t testing.TB) (*testtool.Token, *Module, *Token) {
	t.Helper()
	tt := testtool.NewSoftHSMToken(t, "ggcore-test", "1234")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	tok, err := m.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatal(err)
	}
	return tt, m, tok
}

// pkcs11Tool runs pkcs11-tool against the test's token, logged in.
func pkcs11Tool(t *testing.T, tt *testtool.Token, args ...string) string {
	t.Helper()
	tool := testtool.Require(t, "pkcs11-tool")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append([]string{"--module", tt.Module, "--token-label", tt.Label, "--login", "--pin", tt.PIN}, args...)
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args[6:], " "), err, out)
	}
	return string(out)
}

// verify reports whether sig is a valid signature of digest by pub: ECDSA
// in ASN.1 DER, RSA PKCS#1 v1.5, or RSA-PSS with salt = hash length.
func verify(pub crypto.PublicKey, h crypto.Hash, digest, sig []byte, pss bool) error {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return errors.New("ECDSA signature (ASN.1 DER) does not verify")
		}
		return nil
	case *rsa.PublicKey:
		if pss {
			return rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.VerifyPKCS1v15(pub, h, digest, sig)
	}
	return errors.New("unexpected public key type")
}

// countObjects counts every object on the token.
func countObjects(t *testing.T, tok *Token) int {
	t.Helper()
	var n int
	err := tok.session(func(s pkcs11.SessionHandle) error {
		objs, err := tok.find(s, -1, "", nil, 1000)
		n = len(objs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// id reads a key's CKA_ID.
func (k *Key) id(t *testing.T) []byte {
	t.Helper()
	var id []byte
	err := k.token.session(func(s pkcs11.SessionHandle) error {
		attrs, err := k.token.ctx.GetAttributeValue(s, k.obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err == nil {
			id = attrs[0].Value
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}
