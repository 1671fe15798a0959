package tpm

import (
	"bytes"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// pemType is the PEM block type of a TPM-wrapped key file.
const pemType = "TSS2 PRIVATE KEY"

// OIDs of the TPM 2.0 key file format (TCG arc 2.23.133.10.1).
var (
	oidLoadableKey   = asn1.ObjectIdentifier{2, 23, 133, 10, 1, 3}
	oidImportableKey = asn1.ObjectIdentifier{2, 23, 133, 10, 1, 4}
	oidSealedData    = asn1.ObjectIdentifier{2, 23, 133, 10, 1, 5}
)

// ownerHierarchy is the parent tools write for a key whose parent is a
// primary key they derive from their default template in the owner
// hierarchy (TPM_RH_OWNER).
const ownerHierarchy uint32 = 0x40000001

// Persistent handles of the owner hierarchy.
const (
	persistentFirst uint32 = 0x81000000
	persistentLast  uint32 = 0x81FFFFFF
)

// keyFile is the ASN.1 of a loadable TSS2 key as ggcore writes it:
//
//	TPMKey ::= SEQUENCE {
//	    type      OBJECT IDENTIFIER,          -- 2.23.133.10.1.3
//	    emptyAuth [0] EXPLICIT BOOLEAN OPTIONAL,
//	    parent    INTEGER,
//	    pubkey    OCTET STRING,               -- TPM2B_PUBLIC
//	    privkey   OCTET STRING }              -- TPM2B_PRIVATE
//
// The full format also has optional fields [1] policy, [2] secret,
// [3] authPolicy, [4] description and [5] rsaParent before parent;
// ParsePEM reads them (and refuses the ones it cannot honour).
type keyFile struct {
	Type      asn1.ObjectIdentifier
	EmptyAuth bool `asn1:"explicit,tag:0,optional"`
	Parent    int64
	PubKey    []byte
	PrivKey   []byte
}

// MarshalPEM encodes b as a "TSS2 PRIVATE KEY" PEM block, the format of
// the openssl tpm2 provider and tpm2-tss-engine.
func (b *Blob) MarshalPEM() []byte {
	der, err := asn1.Marshal(keyFile{
		Type:      oidLoadableKey,
		EmptyAuth: true,
		Parent:    int64(b.Parent),
		PubKey:    sized(b.Public),
		PrivKey:   sized(b.Private),
	})
	if err != nil {
		// Every field has a fixed, encodable type.
		panic("tpm: marshal key file: " + err.Error())
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der})
}

// sized prefixes b with its 16-bit big-endian length, making a TPM2B.
func sized(b []byte) []byte {
	out := make([]byte, 2, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	return append(out, b...)
}

// ParsePEM decodes a "TSS2 PRIVATE KEY" PEM block.
func ParsePEM(data []byte) (*Blob, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("tpm: key file: no PEM block found")
	}
	if block.Type != pemType {
		return nil, fmt.Errorf("tpm: key file: PEM block is %q, want %q", block.Type, pemType)
	}
	b, err := parseDER(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tpm: key file: %w", err)
	}
	return b, nil
}

// parseDER decodes the TPMKey SEQUENCE.
func parseDER(der []byte) (*Blob, error) {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return nil, fmt.Errorf("not DER: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes of trailing data after the key", len(rest))
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, errors.New("not an ASN.1 SEQUENCE")
	}
	in := seq.Bytes
	next := func(what string) (asn1.RawValue, error) {
		var v asn1.RawValue
		if len(in) == 0 {
			return v, fmt.Errorf("truncated: %s missing", what)
		}
		r, err := asn1.Unmarshal(in, &v)
		if err != nil {
			return v, fmt.Errorf("%s: %w", what, err)
		}
		in = r
		return v, nil
	}

	// type
	v, err := next("type")
	if err != nil {
		return nil, err
	}
	var oid asn1.ObjectIdentifier
	if !isUniversal(v, asn1.TagOID) {
		return nil, errors.New("type: not an OBJECT IDENTIFIER")
	}
	if _, err := asn1.Unmarshal(v.FullBytes, &oid); err != nil {
		return nil, fmt.Errorf("type: %w", err)
	}
	switch {
	case oid.Equal(oidLoadableKey):
	case oid.Equal(oidImportableKey):
		return nil, fmt.Errorf("type %s is an importable key (wrapped for TPM2_Import, not yet a child of this TPM); ggcore loads only loadable keys (%s): import it first, e.g. with tpm2_import, and write the result as a loadable key", oid, oidLoadableKey)
	case oid.Equal(oidSealedData):
		return nil, fmt.Errorf("type %s is sealed data, not a key", oid)
	default:
		return nil, fmt.Errorf("type %s is not a TPM key type (want %s, a loadable key)", oid, oidLoadableKey)
	}

	// optional context-specific fields [0]..[5]
	emptyAuth := false
	lastTag := -1
	for {
		v, err = next("parent")
		if err != nil {
			return nil, err
		}
		if v.Class != asn1.ClassContextSpecific {
			break
		}
		if v.Tag <= lastTag {
			return nil, fmt.Errorf("field [%d] after field [%d]: fields out of order or repeated", v.Tag, lastTag)
		}
		lastTag = v.Tag
		switch v.Tag {
		case 0:
			if !v.IsCompound {
				return nil, errors.New("emptyAuth [0]: not EXPLICIT")
			}
			var b asn1.RawValue
			r, err := asn1.Unmarshal(v.Bytes, &b)
			if err != nil {
				return nil, fmt.Errorf("emptyAuth [0]: %w", err)
			}
			if len(r) != 0 || !isUniversal(b, asn1.TagBoolean) || len(b.Bytes) != 1 {
				return nil, errors.New("emptyAuth [0]: not a BOOLEAN")
			}
			// BER, not DER: tpm2-openssl writes TRUE as 0x01.
			emptyAuth = b.Bytes[0] != 0
		case 1:
			return nil, errors.New("the key carries a policy ([1] policy): keys that need a policy session are not supported")
		case 2:
			return nil, errors.New("the key carries an import secret ([2] secret): importable keys are not supported; import the key into the TPM first")
		case 3:
			return nil, errors.New("the key carries signed policies ([3] authPolicy): keys that need a policy session are not supported")
		case 4, 5:
			// [4] description: a free-text label. [5] rsaParent: says
			// the owner-hierarchy parent is an RSA primary; it matters
			// only for parent 0x40000001, which Load derives from the
			// SRK either way (a wrong guess fails cleanly).
		default:
			return nil, fmt.Errorf("unknown field [%d]", v.Tag)
		}
	}
	if !emptyAuth {
		return nil, errors.New("the key has an authorization value (emptyAuth absent or false); ggcore uses keys with empty authorization only")
	}

	// parent
	if !isUniversal(v, asn1.TagInteger) {
		return nil, errors.New("parent: not an INTEGER")
	}
	var parentBig *big.Int
	if _, err := asn1.Unmarshal(v.FullBytes, &parentBig); err != nil {
		return nil, fmt.Errorf("parent: %w", err)
	}
	if parentBig.Sign() < 0 || parentBig.BitLen() > 32 {
		return nil, fmt.Errorf("parent %v is not a TPM handle", parentBig)
	}
	parent := uint32(parentBig.Uint64())
	if parent != ownerHierarchy && (parent < persistentFirst || parent > persistentLast) {
		return nil, fmt.Errorf("parent 0x%08x is neither a persistent handle (0x81000000-0x81ffffff) nor the owner hierarchy (0x40000001)", parent)
	}

	// pubkey
	v, err = next("pubkey")
	if err != nil {
		return nil, err
	}
	pub, err := unsized(v, "pubkey")
	if err != nil {
		return nil, err
	}
	tpub, err := unmarshalPublic(pub)
	if err != nil {
		return nil, fmt.Errorf("pubkey: %w", err)
	}
	if tpub.Type != tpm2.TPMAlgRSA && tpub.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("pubkey: object type %s is not an RSA or ECC key", algName(tpub.Type))
	}

	// privkey
	v, err = next("privkey")
	if err != nil {
		return nil, err
	}
	priv, err := unsized(v, "privkey")
	if err != nil {
		return nil, err
	}
	if len(priv) == 0 {
		return nil, errors.New("privkey: empty")
	}
	if len(in) != 0 {
		return nil, errors.New("unexpected data after privkey")
	}
	return &Blob{Parent: parent, Public: pub, Private: priv}, nil
}

func isUniversal(v asn1.RawValue, tag int) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == tag && !v.IsCompound
}

// unsized checks that v is an OCTET STRING holding a TPM2B and returns
// the TPM2B's contents.
func unsized(v asn1.RawValue, what string) ([]byte, error) {
	if !isUniversal(v, asn1.TagOctetString) {
		return nil, fmt.Errorf("%s: not an OCTET STRING", what)
	}
	b := v.Bytes
	if len(b) < 2 {
		return nil, fmt.Errorf("%s: %d bytes, too short for a TPM2B size", what, len(b))
	}
	if n := int(binary.BigEndian.Uint16(b)); n != len(b)-2 {
		return nil, fmt.Errorf("%s: TPM2B size %d does not match its %d bytes of contents", what, n, len(b)-2)
	}
	return bytes.Clone(b[2:]), nil
}

// unmarshalPublic decodes a marshalled TPMT_PUBLIC and insists that it
// is exactly that (no trailing bytes, canonical encoding).
func unmarshalPublic(b []byte) (pub *tpm2.TPMTPublic, err error) {
	defer func() {
		// go-tpm's reflection-driven decoder is not written for
		// hostile input; never let a bad file crash the caller.
		if r := recover(); r != nil {
			pub, err = nil, fmt.Errorf("not a TPMT_PUBLIC (%v)", r)
		}
	}()
	pub, err = tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, fmt.Errorf("not a TPMT_PUBLIC: %w", err)
	}
	if !bytes.Equal(tpm2.Marshal(pub), b) {
		return nil, errors.New("not a TPMT_PUBLIC: trailing or non-canonical bytes")
	}
	return pub, nil
}
