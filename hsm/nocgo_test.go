//go:build !cgo

package hsm

import (
	"errors"
	"strings"
	"testing"
)

// A build without cgo refuses PKCS#11 modules, saying why.
func TestOpenModuleWithoutCgo(t *testing.T) {
	_, err := OpenModule("/usr/lib/softhsm/libsofthsm2.so")
	if !errors.Is(err, ErrNoCgo) || !strings.Contains(err.Error(), "/usr/lib/softhsm/libsofthsm2.so") || !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Errorf("OpenModule = %v; want ErrNoCgo naming the module and CGO_ENABLED=1", err)
	}
}
