package keyspec

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"strings"
	"testing"
)

func TestParseType(t *testing.T) {
	tests := []struct {
		in      string
		want    Type
		wantErr string
	}{
		{"rsa2048", RSA2048, ""},
		{"rsa3072", RSA3072, ""},
		{"ecp256", ECP256, ""},
		{"ecp384", ECP384, ""},
		{"", "", `unknown key type "": want one of rsa2048, rsa3072, ecp256, ecp384`},
		{"rsa1024", "", `unknown key type "rsa1024"`},
		{"RSA2048", "", `unknown key type "RSA2048"`},
		{" ecp256", "", `unknown key type " ecp256"`},
		{"ed25519", "", "want one of rsa2048, rsa3072, ecp256, ecp384"},
	}
	for _, tt := range tests {
		got, err := ParseType(tt.in)
		switch {
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("ParseType(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseType(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
		}
	}
}

func TestTypeProperties(t *testing.T) {
	tests := []struct {
		t     Type
		isRSA bool
		bits  int
		curve elliptic.Curve
	}{
		{RSA2048, true, 2048, nil},
		{RSA3072, true, 3072, nil},
		{ECP256, false, 0, elliptic.P256()},
		{ECP384, false, 0, elliptic.P384()},
		{"rsa1024", false, 0, nil},
	}
	for _, tt := range tests {
		if got := tt.t.IsRSA(); got != tt.isRSA {
			t.Errorf("%s.IsRSA() = %v", tt.t, got)
		}
		if got := tt.t.RSABits(); got != tt.bits {
			t.Errorf("%s.RSABits() = %d, want %d", tt.t, got, tt.bits)
		}
		if got := tt.t.Curve(); got != tt.curve {
			t.Errorf("%s.Curve() = %v, want %v", tt.t, got, tt.curve)
		}
	}
	if len(Types) != 4 {
		t.Errorf("Types = %v, want the four key types", Types)
	}
}

func TestGenerate(t *testing.T) {
	for _, kt := range Types {
		t.Run(string(kt), func(t *testing.T) {
			key, err := kt.Generate()
			if err != nil {
				t.Fatal(err)
			}
			switch pub := key.Public().(type) {
			case *rsa.PublicKey:
				if pub.N.BitLen() != kt.RSABits() {
					t.Errorf("RSA-%d key, want %d bits", pub.N.BitLen(), kt.RSABits())
				}
			case *ecdsa.PublicKey:
				if pub.Curve != kt.Curve() {
					t.Errorf("EC key on %s, want %s", pub.Curve.Params().Name, kt.Curve().Params().Name)
				}
			default:
				t.Errorf("%s generated a %T", kt, pub)
			}
		})
	}
	if _, err := Type("rsa1024").Generate(); err == nil || !strings.Contains(err.Error(), `unknown key type "rsa1024"`) {
		t.Errorf("Generate(rsa1024) = %v, want an unknown key type error", err)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		u       Usage
		name    string
		t       Type
		wantErr string
	}{
		{Sign, "sign", RSA2048, ""},
		{Sign, "sign", ECP384, ""},
		{Decrypt, "decrypt", RSA2048, ""},
		{Decrypt, "decrypt", RSA3072, ""},
		{Decrypt, "decrypt", ECP256, "a decryption key must be RSA, not ecp256"},
		{Decrypt, "decrypt", ECP384, "a decryption key must be RSA, not ecp384"},
		{Usage(7), "Usage(7)", RSA2048, ""},
	}
	for _, tt := range tests {
		if got := tt.u.String(); got != tt.name {
			t.Errorf("Usage(%d).String() = %q, want %q", int(tt.u), got, tt.name)
		}
		err := tt.u.Check(tt.t)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s.Check(%s) = %v, want nil", tt.u, tt.t, err)
		case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
			t.Errorf("%s.Check(%s) = %v, want %q", tt.u, tt.t, err, tt.wantErr)
		}
	}
}

func TestParseUsage(t *testing.T) {
	tests := []struct {
		in   string
		want Usage
		ok   bool
	}{
		{"sign", Sign, true},
		{"decrypt", Decrypt, true},
		{"", Sign, false},
		{"Sign", Sign, false},
		{"encrypt", Sign, false},
		{"Usage(7)", Sign, false},
	}
	for _, tt := range tests {
		got, err := ParseUsage(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseUsage(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "want sign or decrypt") {
			t.Errorf("ParseUsage(%q) error %q does not list the usages", tt.in, err)
		}
	}
}

func TestParseBackend(t *testing.T) {
	tests := []struct {
		in   string
		want Backend
		ok   bool
	}{
		{"file", File, true},
		{"tpm", TPM, true},
		{"pkcs11", PKCS11, true},
		// "tpm2" is the key URI scheme, not a backend; ggprov accepts it
		// for --key-store as a deprecated alias of its own.
		{"tpm2", "", false},
		{"TPM", "", false},
		{"", "", false},
		{"hsm", "", false},
	}
	for _, tt := range tests {
		got, err := ParseBackend(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseBackend(%q) = %q, %v; want %q (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "want one of file, tpm, pkcs11") {
			t.Errorf("ParseBackend(%q) error %q does not list the backends", tt.in, err)
		}
	}
}

// FuzzParseType: ParseType accepts exactly the words of Types, and
// returns the type the word spells.
func FuzzParseType(f *testing.F) {
	for _, s := range []string{"rsa2048", "rsa3072", "ecp256", "ecp384", "", "RSA2048", "rsa2048\x00", "ecp 256"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseType(s)
		known := false
		for _, kt := range Types {
			known = known || string(kt) == s
		}
		if known != (err == nil) {
			t.Fatalf("ParseType(%q) = %q, %v", s, got, err)
		}
		if err != nil {
			if got != "" {
				t.Fatalf("ParseType(%q) returned %q with error %v", s, got, err)
			}
			return
		}
		if string(got) != s || got.IsRSA() == (got.Curve() != nil) || got.IsRSA() != (got.RSABits() > 0) {
			t.Fatalf("ParseType(%q) = %q: IsRSA %v, RSABits %d, Curve %v", s, got, got.IsRSA(), got.RSABits(), got.Curve())
		}
	})
}
