//go:build !cgo

package hsm

import (
	"crypto"
	"errors"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// A build without cgo refuses PKCS#11 modules, saying why.
func TestOpenModuleWithoutCgo(t *testing.T) {
	_, err := OpenModule("/usr/lib/softhsm/libsofthsm2.so")
	if !errors.Is(err, ErrNoCgo) || !strings.Contains(err.Error(), "/usr/lib/softhsm/libsofthsm2.so") || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Errorf("OpenModule = %v; want ErrNoCgo naming the module and CGO_ENABLED=1", err)
	}
}

// Every method of the no-cgo build fails with ErrNoCgo.
func TestMethodsWithoutCgo(t *testing.T) {
	var (
		m   Module
		tok Token
		k   Key
	)
	_, errToken := m.Token("t", "1234")
	_, errKey := tok.Key("k", nil)
	_, errGenerate := tok.Generate("k", nil, keyspec.ECP256, keyspec.Sign)
	_, errSign := k.Sign(nil, make([]byte, 32), crypto.SHA256)
	_, errDecrypt := k.Decrypt(nil, []byte("x"), nil)
	for name, err := range map[string]error{
		"Token": errToken, "Key": errKey, "Generate": errGenerate,
		"Destroy": tok.Destroy("k", nil), "Sign": errSign, "Decrypt": errDecrypt,
	} {
		if !errors.Is(err, ErrNoCgo) {
			t.Errorf("%s = %v; want ErrNoCgo", name, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}
