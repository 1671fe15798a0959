package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseKeyRef(t *testing.T) {
	tests := []struct {
		in   string
		want KeyRef
	}{
		{"file:///greengrass/certs/core.key.pem", KeyRef{Scheme: SchemeFile, Path: "/greengrass/certs/core.key.pem"}},
		{"FILE:///k.pem", KeyRef{Scheme: SchemeFile, Path: "/k.pem"}},
		{"file:///a/../b//k.pem", KeyRef{Scheme: SchemeFile, Path: "/b/k.pem"}},
		{"file:///my%20keys/k.pem", KeyRef{Scheme: SchemeFile, Path: "/my keys/k.pem"}},
		{"tpm2:handle=0x81000002", KeyRef{Scheme: SchemeTPM2, Handle: 0x81000002}},
		{"tpm2:handle=0x81ffffff", KeyRef{Scheme: SchemeTPM2, Handle: 0x81FFFFFF}},
		{"handle:0x81000000", KeyRef{Scheme: SchemeTPM2, Handle: 0x81000000}},
		{"pkcs11:object=core-private-key-label;type=private",
			KeyRef{Scheme: SchemePKCS11, PKCS11: map[string]string{"object": "core-private-key-label", "type": "private"}}},
		{"pkcs11:token=gg;object=My%20Key;type=private;id=%01%ff",
			KeyRef{Scheme: SchemePKCS11, PKCS11: map[string]string{"token": "gg", "object": "My Key", "type": "private", "id": "\x01\xff"}}},
		{"pkcs11:object=a&b=c;type=private;slot-id=3",
			KeyRef{Scheme: SchemePKCS11, PKCS11: map[string]string{"object": "a&b=c", "type": "private", "slot-id": "3"}}},
		{"pkcs11:object=k;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin|x",
			KeyRef{Scheme: SchemePKCS11, PKCS11: map[string]string{"object": "k", "type": "private",
				"module-path": "/usr/lib/softhsm/libsofthsm2.so", "pin-source": "file:/etc/pin|x"}}},
		{"pkcs11:object=k;type=private;x-vendor=1",
			KeyRef{Scheme: SchemePKCS11, PKCS11: map[string]string{"object": "k", "type": "private", "x-vendor": "1"}}},
	}
	for _, tt := range tests {
		got, err := ParseKeyRef(tt.in)
		if err != nil {
			t.Errorf("ParseKeyRef(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseKeyRef(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		// The canonical form parses back to the same reference.
		again, err := ParseKeyRef(got.format(false))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("canonical %q of %q parses as %+v, %v", got.format(false), tt.in, again, err)
		}
	}
}

func TestParseKeyRefErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty key reference"},
		{"/greengrass/certs/core.key", "want a file URI, file:///greengrass/certs/core.key"},
		{"core.key", "not a key reference"},
		{"file:core.key", "three slashes"},
		{"file://certs/core.key", `names host "certs"`},
		{"file:///", "directory"},
		{"file:///certs/", "directory"},
		{"file:///k.pem?x=1", "%3F"},
		{"file:///k%2", "%25"},
		{"file:///k%00", "NUL"},
		{"tpm2:0x81000002", "want tpm2:handle=0x81000002"},
		{"tpm2:handle=81000002", "not a hex number"},
		{"tpm2:handle=0x", "not a hex number"},
		{"tpm2:handle=0x1000000000", "not a hex number"},
		{"tpm2:handle=0xZZ", "not a hex number"},
		{"tpm2:handle=0x80000001", "not a persistent handle (0x81000000-0x81FFFFFF)"},
		{"handle:0x82000000", "not a persistent handle"},
		{"pkcs11:", "missing object=LABEL"},
		{"pkcs11:type=private", "missing object=LABEL"},
		{"pkcs11:object=;type=private", "missing object=LABEL"},
		{"pkcs11:object=k", "missing type=private"},
		{"pkcs11:object=k;type=public", "type=public, want type=private"},
		{"pkcs11:object=k;type=private;", "empty attribute"},
		{"pkcs11:object=k;;type=private", "empty attribute"},
		{"pkcs11:object", "has no '='"},
		{"pkcs11:object=k;type=private;colour=red", `unknown attribute "colour"`},
		{"pkcs11:object=k;type=private;pin-value=1", `"pin-value" belongs in the query (after '?')`},
		{"pkcs11:object=k;type=private?token=t", `"token" belongs in the path (before '?')`},
		{"pkcs11:object=k;object=j;type=private", `"object" given twice`},
		{"pkcs11:object=my key;type=private", `character ' ' must be percent-encoded (as %20)`},
		{"pkcs11:object=a/b;type=private", `character '/' must be percent-encoded (as %2F)`},
		{"pkcs11:object=k%2;type=private", "bad escape"},
		{"pkcs11:object=k%zz;type=private", "bad escape"},
		{"pkcs11:object=k;type=private?", "empty query"},
		{"pkcs11:object=k;type=private?module-path=libsofthsm2.so", "module-path"},
		{"pkcs11:object=k;type=private;slot-id=one", "slot-id"},
		{"pkcs11:object=k;type=private?pin-value=1&pin-source=file:/p", "not both"},
	}
	for _, tt := range tests {
		_, err := ParseKeyRef(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseKeyRef(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestKeyRefString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"file:///a%20b/k.pem", "file:///a%20b/k.pem"},
		{"handle:0x81000002", "tpm2:handle=0x81000002"},
		{"pkcs11:type=private;object=My%20Key;token=gg?pin-value=secret&module-path=/m.so",
			"pkcs11:object=My%20Key;token=gg;type=private?module-path=%2Fm.so&pin-value=REDACTED"},
	}
	for _, tt := range tests {
		k, err := ParseKeyRef(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.String(); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
