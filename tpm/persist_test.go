package tpm

//lint:file-ignore SA1019 the tests wrap secrets with RSA PKCS #1 v1.5, as Greengrass v1 does, to check the TPM key decrypts them.

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ggcore/ggcore/internal/keyspec"
)

func TestPersist(t *testing.T) {
	tp, sw := openSW(t, "unix")
	const handle = 0x81000002
	b, err := tp.Create(keyspec.ECP256, keyspec.Sign)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := tp.Persist(b, handle)
	if err != nil {
		t.Fatalf("Persist: %v", err)
	}
	signVerify(t, pk, crypto.SHA256)
	if n := len(transientHandles(t, tp)); n != 0 {
		t.Errorf("%d transient objects left after Persist, want 0", n)
	}
	// A decryption key works through its persistent handle too (the
	// salted session then needs the SRK and the key in slots at once).
	db, err := tp.Create(keyspec.RSA2048, keyspec.Decrypt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Persist(db, handle+1); err != nil {
		t.Fatalf("Persist(decrypt key): %v", err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}

	// Reconnect: the keys are still there.
	tp, err = Open(sw.Device)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	k, err := tp.Persistent(handle)
	if err != nil {
		t.Fatalf("Persistent after reconnect: %v", err)
	}
	if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pk.Public()) {
		t.Fatal("the persistent key's public key changed")
	}
	signVerify(t, k, crypto.SHA256)
	dk, err := tp.Persistent(handle + 1)
	if err != nil {
		t.Fatal(err)
	}
	if dk.Usage() != keyspec.Decrypt {
		t.Fatalf("persistent decryption key has usage %v", dk.Usage())
	}
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, dk.Public().(*rsa.PublicKey), []byte("data key"))
	if got, err := dk.Decrypt(nil, ct, nil); err != nil || string(got) != "data key" {
		t.Fatalf("Decrypt with the persistent key = %q, %v", got, err)
	}

	t.Run("handle in use", func(t *testing.T) {
		other, err := tp.Create(keyspec.ECP384, keyspec.Sign)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []uint32{handle, SRKHandle} {
			_, err = tp.Persist(other, h)
			if !errors.Is(err, ErrHandleInUse) {
				t.Fatalf("Persist on a used handle = %v, want ErrHandleInUse", err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("0x%08x", h)) {
				t.Errorf("error %q does not name the handle", err)
			}
		}
		// Nothing changed: the old key is still there, nothing leaked.
		again, err := tp.Persistent(handle)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pk.Public()) {
			t.Fatal("Persist on a used handle replaced the key")
		}
		if n := len(transientHandles(t, tp)); n != 0 {
			t.Errorf("%d transient objects left after the refused Persist", n)
		}
	})
	t.Run("absent", func(t *testing.T) {
		_, err := tp.Persistent(0x81000010)
		if !errors.Is(err, ErrHandleAbsent) || !strings.Contains(err.Error(), "0x81000010") {
			t.Fatalf("Persistent(empty handle) = %v, want ErrHandleAbsent naming 0x81000010", err)
		}
	})
	t.Run("storage key refused", func(t *testing.T) {
		_, err := tp.Persistent(SRKHandle)
		if err == nil || !strings.Contains(err.Error(), "restricted key") {
			t.Fatalf("Persistent(SRK) = %v, want a refusal", err)
		}
	})
	t.Run("not a persistent handle", func(t *testing.T) {
		if _, err := tp.Persistent(0x80000001); err == nil || !strings.Contains(err.Error(), "not a persistent handle") {
			t.Fatalf("Persistent(0x80000001) = %v", err)
		}
		if _, err := tp.Persist(b, 0x01000001); err == nil || !strings.Contains(err.Error(), "not a persistent handle") {
			t.Fatalf("Persist(0x01000001) = %v", err)
		}
	})
}

// signVerify signs a digest with k and verifies it.
func signVerify(t testing.TB, k *Key, h crypto.Hash) {
	t.Helper()
	d := digestOf(h, "signVerify")
	sig, err := k.Sign(rand.Reader, d, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(k.Public(), h, d, sig, h); err != nil {
		t.Fatal(err)
	}
}

// transientHandles lists the transient objects loaded in the TPM.
func transientHandles(t testing.TB, tp *TPM) []tpm2.TPMHandle {
	t.Helper()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	hs, err := tp.listHandles(0x80000000)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// TestKeysStayInTPM shows that a created key cannot be taken out of the
// TPM: its attributes forbid it, the TPM refuses to duplicate it, and
// its wrapped private part is useless to another TPM.
func TestKeysStayInTPM(t *testing.T) {
	tp, _ := openSW(t, "unix")
	for _, kt := range []keyspec.Type{keyspec.ECP256, keyspec.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			b, k := createLoad(t, tp, kt, keyspec.Sign)
			pub := readPublic(t, tp, k)
			a := pub.ObjectAttributes
			if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
				t.Fatalf("attributes fixedTPM=%v fixedParent=%v sensitiveDataOrigin=%v, want all set", a.FixedTPM, a.FixedParent, a.SensitiveDataOrigin)
			}
			if len(pub.AuthPolicy.Buffer) != 0 {
				t.Fatal("the key has an authPolicy: some policy could authorise duplication")
			}
			if !a.UserWithAuth || !a.NoDA || a.AdminWithPolicy || a.Restricted {
				t.Errorf("attributes %+v: want userWithAuth, noDA, not adminWithPolicy, not restricted", a)
			}

			// TPM2_Duplicate needs the DUP role, which only a policy
			// session can have; build one that asks for duplication.
			tp.mu.Lock()
			h, err := tp.use(k)
			if err != nil {
				tp.mu.Unlock()
				t.Fatal(err)
			}
			_, err = tpm2.Duplicate{
				ObjectHandle: tpm2.AuthHandle{
					Handle: h,
					Name:   k.name,
					Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(tr transport.TPM, s tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
						_, err := tpm2.PolicyCommandCode{PolicySession: s, Code: tpm2.TPMCCDuplicate}.Execute(tr)
						return err
					}),
				},
				NewParentHandle: tpm2.TPMRHNull,
				Symmetric:       tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
			}.Execute(tp.tr)
			tp.mu.Unlock()
			if err == nil {
				t.Fatal("TPM2_Duplicate of the key succeeded")
			}
			if !isTPMError(err) {
				t.Fatalf("TPM2_Duplicate failed, but not in the TPM: %v", err)
			}
			t.Logf("TPM2_Duplicate refused: %v", err)

			// The wrapped private part means nothing to another TPM.
			other, _ := openSW(t, "unix")
			_, err = other.Load(b)
			if !errors.Is(err, tpm2.TPMRCIntegrity) || !strings.Contains(err.Error(), "not made under this TPM's key") {
				t.Fatalf("Load into another TPM = %v, want TPM_RC_INTEGRITY", err)
			}
		})
	}
}

// TestFixedParentBlocksDuplication shows the second barrier: even a key
// whose policy allows TPM2_Duplicate cannot be duplicated once it has
// ggcore's fixedParent attribute.
func TestFixedParentBlocksDuplication(t *testing.T) {
	tp, _ := openSW(t, "unix")
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := (tpm2.PolicyCommandCode{Code: tpm2.TPMCCDuplicate}).Update(calc); err != nil {
		t.Fatal(err)
	}
	tmpl, err := template(keyspec.ECP256, keyspec.Sign)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.AuthPolicy = tpm2.TPM2BDigest{Buffer: calc.Hash().Digest}

	tp.mu.Lock()
	defer tp.mu.Unlock()
	srk := tpm2.AuthHandle{Handle: tpm2.TPMHandle(SRKHandle), Name: tp.srkName, Auth: tpm2.PasswordAuth(nil)}
	crsp, err := tpm2.Create{ParentHandle: srk, InPublic: tpm2.New2B(tmpl)}.Execute(tp.tr)
	if err != nil {
		t.Fatal(err)
	}
	lrsp, err := tpm2.Load{ParentHandle: srk, InPrivate: crsp.OutPrivate, InPublic: crsp.OutPublic}.Execute(tp.tr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: lrsp.ObjectHandle}.Execute(tp.tr)
	_, err = tpm2.Duplicate{
		ObjectHandle: tpm2.AuthHandle{
			Handle: lrsp.ObjectHandle,
			Name:   lrsp.Name,
			Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(tr transport.TPM, s tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
				_, err := tpm2.PolicyCommandCode{PolicySession: s, Code: tpm2.TPMCCDuplicate}.Execute(tr)
				return err
			}),
		},
		NewParentHandle: tpm2.TPMRHNull,
		Symmetric:       tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}.Execute(tp.tr)
	if !errors.Is(err, tpm2.TPMRCAttributes) {
		t.Fatalf("TPM2_Duplicate of a fixedParent key with a duplication policy = %v, want TPM_RC_ATTRIBUTES", err)
	}
}
