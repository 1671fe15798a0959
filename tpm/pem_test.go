package tpm

import (
	"bytes"
	"encoding/asn1"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// testPublic is a marshalled TPMT_PUBLIC of a P-256 signing key (its
// point is not checked by ParsePEM).
func testPublic(t testing.TB) []byte {
	t.Helper()
	tmpl, err := template(keyspec.ECP256, keyspec.Sign)
	if err != nil {
		t.Fatal(err)
	}
	return tpm2.Marshal(tmpl)
}

func mustDER(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seqPEM wraps DER elements in a SEQUENCE and a TSS2 PEM block.
func seqPEM(t testing.TB, elems ...[]byte) []byte {
	t.Helper()
	der := mustDER(t, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: bytes.Join(elems, nil)})
	return pem.EncodeToMemory(&pem.Block{Type: "TSS2 PRIVATE KEY", Bytes: der})
}

// explicit wraps an encoded element in a context-specific [tag].
func explicit(t testing.TB, tag int, inner []byte) []byte {
	return mustDER(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: true, Bytes: inner})
}

type pemParts struct {
	oid, emptyAuth, parent, pub, priv []byte
}

func goodParts(t testing.TB) pemParts {
	return pemParts{
		oid:       mustDER(t, oidLoadableKey),
		emptyAuth: explicit(t, 0, mustDER(t, true)),
		parent:    mustDER(t, int64(SRKHandle)),
		pub:       mustDER(t, sized(testPublic(t))),
		priv:      mustDER(t, sized([]byte("wrapped private part"))),
	}
}

func (p pemParts) pem(t testing.TB, extra ...[]byte) []byte {
	var elems [][]byte
	for _, e := range [][]byte{p.oid, p.emptyAuth} {
		if e != nil {
			elems = append(elems, e)
		}
	}
	elems = append(elems, extra...)
	for _, e := range [][]byte{p.parent, p.pub, p.priv} {
		if e != nil {
			elems = append(elems, e)
		}
	}
	return seqPEM(t, elems...)
}

func TestParsePEMAccepts(t *testing.T) {
	good := goodParts(t)
	b := &Blob{Parent: SRKHandle, Public: testPublic(t), Private: []byte("wrapped private part")}
	berTrue := good
	berTrue.emptyAuth = []byte{0xa0, 0x03, 0x01, 0x01, 0x01} // tpm2-openssl writes TRUE as 0x01
	owner := good
	owner.parent = mustDER(t, int64(0x40000001))
	for _, tc := range []struct {
		name   string
		data   []byte
		parent uint32
	}{
		{"MarshalPEM", b.MarshalPEM(), SRKHandle},
		{"built by hand", good.pem(t), SRKHandle},
		{"BER boolean", berTrue.pem(t), SRKHandle},
		{"owner hierarchy parent", owner.pem(t), 0x40000001},
		{"description", good.pem(t, explicit(t, 4, mustDER(t, "a label"))), SRKHandle},
		{"text around the block", append(append([]byte("key:\n"), good.pem(t)...), "trailer\n"...), SRKHandle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePEM(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if got.Parent != tc.parent || !bytes.Equal(got.Public, b.Public) || !bytes.Equal(got.Private, b.Private) {
				t.Fatalf("ParsePEM = %+v", got)
			}
		})
	}
}

func TestParsePEMErrors(t *testing.T) {
	good := goodParts(t)
	with := func(f func(p *pemParts)) []byte {
		p := good
		f(&p)
		return p.pem(t)
	}
	valid := good.pem(t)
	blk, _ := pem.Decode(valid)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no PEM block found"},
		{"garbage", []byte("\x00\x01 not a key at all"), "no PEM block found"},
		{"other PEM type", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: blk.Bytes}), `PEM block is "RSA PRIVATE KEY", want "TSS2 PRIVATE KEY"`},
		{"not DER", pem.EncodeToMemory(&pem.Block{Type: "TSS2 PRIVATE KEY", Bytes: []byte("garbage bytes")}), "not DER"},
		{"truncated DER", pem.EncodeToMemory(&pem.Block{Type: "TSS2 PRIVATE KEY", Bytes: blk.Bytes[:len(blk.Bytes)/2]}), "not DER"},
		{"trailing DER", pem.EncodeToMemory(&pem.Block{Type: "TSS2 PRIVATE KEY", Bytes: append(bytes.Clone(blk.Bytes), 0, 0)}), "2 bytes of trailing data"},
		{"not a SEQUENCE", pem.EncodeToMemory(&pem.Block{Type: "TSS2 PRIVATE KEY", Bytes: mustDER(t, 5)}), "not an ASN.1 SEQUENCE"},
		{"empty SEQUENCE", seqPEM(t), "truncated: type missing"},
		{"privkey missing", with(func(p *pemParts) { p.priv = nil }), "truncated: privkey missing"},
		{"only the type", seqPEM(t, good.oid), "truncated: parent missing"},
		{"type not an OID", with(func(p *pemParts) { p.oid = mustDER(t, 3) }), "type: not an OBJECT IDENTIFIER"},
		{"wrong OID", with(func(p *pemParts) { p.oid = mustDER(t, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}) }), "type 1.2.840.113549.1.1.1 is not a TPM key type"},
		{"importable key", with(func(p *pemParts) { p.oid = mustDER(t, oidImportableKey) }), "is an importable key"},
		{"sealed data", with(func(p *pemParts) { p.oid = mustDER(t, oidSealedData) }), "is sealed data, not a key"},
		{"import secret", good.pem(t, explicit(t, 2, mustDER(t, []byte("seed")))), "import secret ([2] secret)"},
		{"policy", good.pem(t, explicit(t, 1, mustDER(t, []asn1.RawValue{}))), "carries a policy"},
		{"auth policy", good.pem(t, explicit(t, 3, mustDER(t, []asn1.RawValue{}))), "signed policies"},
		{"unknown field", good.pem(t, explicit(t, 9, mustDER(t, 1))), "unknown field [9]"},
		{"fields out of order", good.pem(t, explicit(t, 4, mustDER(t, "x")), explicit(t, 4, mustDER(t, "y"))), "out of order or repeated"},
		{"emptyAuth absent", with(func(p *pemParts) { p.emptyAuth = nil }), "has an authorization value"},
		{"emptyAuth false", with(func(p *pemParts) { p.emptyAuth = explicit(t, 0, mustDER(t, false)) }), "has an authorization value"},
		{"emptyAuth not boolean", with(func(p *pemParts) { p.emptyAuth = explicit(t, 0, mustDER(t, 1)) }), "emptyAuth [0]: not a BOOLEAN"},
		{"parent not INTEGER", with(func(p *pemParts) { p.parent = mustDER(t, "0x81000001") }), "parent: not an INTEGER"},
		{"parent negative", with(func(p *pemParts) { p.parent = mustDER(t, -1) }), "parent -1 is not a TPM handle"},
		{"parent too big", with(func(p *pemParts) { p.parent = mustDER(t, int64(1)<<33) }), "is not a TPM handle"},
		{"parent transient", with(func(p *pemParts) { p.parent = mustDER(t, 0x80000001) }), "parent 0x80000001 is neither a persistent handle"},
		{"pubkey not OCTET STRING", with(func(p *pemParts) { p.pub = mustDER(t, 7) }), "pubkey: not an OCTET STRING"},
		{"pubkey without size", with(func(p *pemParts) { p.pub = mustDER(t, testPublic(t)) }), "pubkey: TPM2B size"},
		{"pubkey too short", with(func(p *pemParts) { p.pub = mustDER(t, []byte{1}) }), "pubkey: 1 bytes, too short"},
		{"pubkey garbage", with(func(p *pemParts) { p.pub = mustDER(t, sized([]byte{0, 0x23, 0xff})) }), "pubkey: not a TPMT_PUBLIC"},
		{"pubkey trailing", with(func(p *pemParts) { p.pub = mustDER(t, sized(append(testPublic(t), 0))) }), "pubkey: not a TPMT_PUBLIC: trailing"},
		{"privkey empty", with(func(p *pemParts) { p.priv = mustDER(t, sized(nil)) }), "privkey: empty"},
		{"privkey size wrong", with(func(p *pemParts) { p.priv = mustDER(t, []byte{0, 9, 1}) }), "privkey: TPM2B size 9 does not match its 1 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParsePEM(tc.data)
			if err == nil {
				t.Fatalf("ParsePEM succeeded: %+v", b)
			}
			if !strings.HasPrefix(err.Error(), "tpm: key file: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParsePEM error %q, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("data after privkey", func(t *testing.T) {
		_, err := ParsePEM(seqPEM(t, good.oid, good.emptyAuth, good.parent, good.pub, good.priv, mustDER(t, 1)))
		if err == nil || !strings.Contains(err.Error(), "unexpected data after privkey") {
			t.Fatalf("ParsePEM = %v", err)
		}
	})
	t.Run("keyed-hash object", func(t *testing.T) {
		pub := tpm2.TPMTPublic{
			Type:    tpm2.TPMAlgKeyedHash,
			NameAlg: tpm2.TPMAlgSHA256,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
				Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{}),
		}
		p := good
		p.pub = mustDER(t, sized(tpm2.Marshal(pub)))
		_, err := ParsePEM(p.pem(t))
		if err == nil || !strings.Contains(err.Error(), "object type KEYEDHASH is not an RSA or ECC key") {
			t.Fatalf("ParsePEM = %v", err)
		}
	})
}

func FuzzParsePEM(f *testing.F) {
	good := goodParts(f)
	f.Add(good.pem(f))
	f.Add((&Blob{Parent: 0x40000001, Public: testPublic(f), Private: []byte{1, 2, 3}}).MarshalPEM())
	f.Add(good.pem(f, explicit(f, 2, mustDER(f, []byte("seed")))))
	f.Add(good.pem(f, explicit(f, 4, mustDER(f, "label"))))
	p := good
	p.oid = mustDER(f, oidImportableKey)
	f.Add(p.pem(f))
	p = good
	p.emptyAuth = nil
	f.Add(p.pem(f))
	f.Add([]byte("-----BEGIN TSS2 PRIVATE KEY-----\nMAA=\n-----END TSS2 PRIVATE KEY-----\n"))
	f.Add([]byte("not pem"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParsePEM(data)
		if err != nil {
			if b != nil {
				t.Fatal("ParsePEM returned a blob and an error")
			}
			return
		}
		// Whatever parses must survive a round trip unchanged.
		again, err := ParsePEM(b.MarshalPEM())
		if err != nil {
			t.Fatalf("ParsePEM(MarshalPEM(%+v)): %v", b, err)
		}
		if again.Parent != b.Parent || !bytes.Equal(again.Public, b.Public) || !bytes.Equal(again.Private, b.Private) {
			t.Fatalf("round trip changed %+v into %+v", b, again)
		}
	})
}
