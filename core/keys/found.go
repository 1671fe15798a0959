package keys

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

// Object identifiers of key algorithms and curves the standard library
// does not load, so that a refusal can say what the file holds.
var (
	algorithmNames = map[string]string{
		"1.2.840.10040.4.1":     "DSA",
		"1.2.840.113549.1.1.10": "RSA-PSS",
		"1.2.840.113549.1.3.1":  "DH",
		"1.2.840.10046.2.1":     "DH",
		"1.3.101.110":           "X25519",
		"1.3.101.111":           "X448",
		"1.3.101.112":           "Ed25519",
		"1.3.101.113":           "Ed448",
	}
	curveNames = map[string]string{
		"1.3.132.0.10":           "secp256k1",
		"1.3.132.0.33":           "P-224",
		"1.3.132.0.35":           "P-521",
		"1.2.840.10045.3.1.1":    "P-192",
		"1.3.36.3.3.2.8.1.1.7":   "brainpoolP256r1",
		"1.3.36.3.3.2.8.1.1.11":  "brainpoolP384r1",
		"1.3.36.3.3.2.8.1.1.13":  "brainpoolP512r1",
		"1.2.156.10197.1.301":    "SM2",
		"1.2.643.7.1.2.1.1.1":    "GOST 256-bit curve",
		"1.2.643.2.2.35.1":       "GOST CryptoPro-A curve",
		"1.3.6.1.4.1.11591.15.1": "Ed25519 (legacy OID)",
	}
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

// pkcs8Info is the outer layer of a PKCS#8 PrivateKeyInfo.
type pkcs8Info struct {
	Version    int
	Algo       pkix.AlgorithmIdentifier
	PrivateKey []byte
	Attributes asn1.RawValue  `asn1:"optional,tag:0"`
	PublicKey  asn1.BitString `asn1:"optional,tag:1"`
}

// sec1Key is an RFC 5915 ECPrivateKey with its parameters left raw.
type sec1Key struct {
	Version    int
	PrivateKey []byte
	Params     asn1.RawValue  `asn1:"optional,tag:0"` // [0] EXPLICIT; Bytes is the inner TLV
	PublicKey  asn1.BitString `asn1:"optional,explicit,tag:1"`
}

// foundKey names the kind of key in a PEM block the standard library
// would not load ("DSA key", "EC key on secp256k1"); "" when it cannot
// tell.
func foundKey(blockType string, der []byte) string {
	switch blockType {
	case "PRIVATE KEY":
		var info pkcs8Info
		if _, err := asn1.Unmarshal(der, &info); err != nil {
			return ""
		}
		if info.Algo.Algorithm.Equal(oidECPublicKey) {
			return "EC key " + curveOf(info.Algo.Parameters.FullBytes)
		}
		if name, ok := algorithmNames[info.Algo.Algorithm.String()]; ok {
			return name + " key"
		}
		return fmt.Sprintf("key of algorithm %s", info.Algo.Algorithm)
	case "EC PRIVATE KEY":
		var k sec1Key
		if _, err := asn1.Unmarshal(der, &k); err != nil || len(k.Params.Bytes) == 0 {
			return ""
		}
		return "EC key " + curveOf(k.Params.Bytes)
	}
	return ""
}

// curveOf describes DER-encoded EC parameters: a named curve, or
// explicit parameters.
func curveOf(params []byte) string {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err != nil {
		return "with explicit curve parameters"
	}
	if name, ok := curveNames[oid.String()]; ok {
		return "on " + name
	}
	return "on curve " + oid.String()
}
