package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// binaries are the programs TestMain builds once for every test.
type binaries struct {
	ggprov  string
	ggcore  string
	ggcloud string
	// ggcoreStatic is built with CGO_ENABLED=0, as the TPM image is: it
	// has no PKCS#11.
	ggcoreStatic string
}

// bin is set by TestMain before any test runs and only read afterwards.
var bin binaries

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ggcore-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = binaries{ggprov: filepath.Join(dir, "ggprov"), ggcore: filepath.Join(dir, "ggcore"),
		ggcoreStatic: filepath.Join(dir, "ggcore-static"), ggcloud: filepath.Join(dir, "ggcloud")}
	for _, b := range []struct {
		out, pkg string
		cgo      bool
	}{
		{bin.ggprov, "github.com/ggcore/ggcore/tools/ggprov", true},
		{bin.ggcore, "github.com/ggcore/ggcore/core/cmd/ggcore", true},
		{bin.ggcoreStatic, "github.com/ggcore/ggcore/core/cmd/ggcore", false},
		{bin.ggcloud, "github.com/ggcore/ggcore/tools/ggcloud", false},
	} {
		if err := goBuild(b.out, b.pkg, b.cgo); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 1
		}
	}
	return m.Run()
}

// goBuild builds pkg into out, with cgo (PKCS#11 support) or without.
func goBuild(out, pkg string, cgo bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s %s: %v\n%s", out, pkg, err, b)
	}
	return nil
}

// requireTool returns the path of a real peer program (see testtool.Require).
func requireTool(t *testing.T, name string) string { return testtool.Require(t, name) }
