package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/ota/release"
	"github.com/ggcore/ggcore/ota/slot"
)

// otaDisk is a system disk of plain files, as ggcore.ota.systemDisk names
// a directory: state, A and B.
type otaDisk struct {
	dir string
	key *ecdsa.PrivateKey
	pub string // the release key's PEM file
}

func newOTADisk(t *testing.T) *otaDisk {
	t.Helper()
	d := &otaDisk{dir: t.TempDir()}
	var err error
	if d.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(d.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	d.pub = writeTemp(t, "release-keys.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	if err := os.WriteFile(d.path("state"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"A", "B"} {
		b := make([]byte, 8<<20)
		rand.Read(b)
		if err := os.WriteFile(d.path(s), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (d *otaDisk) path(name string) string { return filepath.Join(d.dir, name) }

func (d *otaDisk) read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(d.path(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// release builds a signed release with 1 MiB of parts.
func (d *otaDisk) release(t *testing.T, board, version string, sv uint32) []byte {
	t.Helper()
	kernel, initramfs := make([]byte, 256<<10), make([]byte, 768<<10)
	rand.Read(kernel)
	rand.Read(initramfs)
	var out bytes.Buffer
	m := release.Manifest{Compatible: release.Compatible{Arch: "amd64", Board: board, Flavor: "debug"}, Version: version, SecurityVersion: sv}
	if err := release.Build(&out, m, map[string]io.Reader{
		release.PartKernel: bytes.NewReader(kernel), release.PartInitramfs: bytes.NewReader(initramfs),
	}, d.key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func (d *otaDisk) state(t *testing.T) slot.State {
	t.Helper()
	s, err := slot.Open(d.path("state"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (d *otaDisk) saveState(t *testing.T, st slot.State) {
	t.Helper()
	s, err := slot.Open(d.path("state"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
}

// waitMessage waits until the deployment's status says want.
func (c *cloudProc) waitMessage(t *testing.T, group, deployment, want string) string {
	t.Helper()
	var out string
	if !testtool.Poll(testtool.Timeout, func() bool {
		_, out = c.status(t, group, deployment)
		return strings.Contains(out, want)
	}) {
		t.Fatalf("deployment %s: status never said %q:\n%s", deployment, want, out)
	}
	return out
}

// TestFirmwareUpdate: a release deployed with `ggcloud group deploy
// --firmware` is refused, with its reason reported and nothing written,
// when it is a downgrade or for another board; a good one is written
// into the inactive slot and armed, reported InProgress, and the core
// exits to have the machine rebooted. Booted on the new slot (as ggboot
// would, on trial), the core checks its health, commits and reports
// Success.
func TestFirmwareUpdate(t *testing.T) {
	t.Parallel()
	f, c, group := deployFleet(t, "dev1")
	d := newOTADisk(t)
	running := d.release(t, "qemu-q35", "1.2.0", 2)
	fa, err := os.OpenFile(d.path("A"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fa.WriteAt(running, 0)
	fa.Close()
	f.setConfig(t, "ggcore.ota", map[string]any{"systemDisk": d.dir, "slot": "A", "releaseKeys": []string{d.pub}})
	core := startCore(t, f)

	deployFirmware := func(rel []byte) string {
		t.Helper()
		out := runOK(t, bin.ggcloud, "--data", c.data, "group", "deploy", group, "--firmware", writeTemp(t, "release.bin", string(rel)))
		return strings.TrimSpace(out)
	}
	stateBefore, aBefore, bBefore := d.read(t, "state"), d.read(t, "A"), d.read(t, "B")
	for _, tt := range []struct {
		name, board string
		sv          uint32
		reason      string
	}{
		{"downgrade", "qemu-q35", 1, "downgrade"},
		{"foreign board", "rpi4", 2, "wrong board"},
	} {
		id := deployFirmware(d.release(t, tt.board, "1.1.0", tt.sv))
		if s, out := c.waitStatus(t, group, id); s != "Failure" || !strings.Contains(out, tt.reason) {
			t.Fatalf("%s: deployment %s: %s; want Failure naming %q\ncore log:\n%s", tt.name, id, out, tt.reason, core.log)
		} else {
			t.Logf("%s: %s", tt.name, strings.TrimSpace(out))
		}
		if !bytes.Equal(d.read(t, "state"), stateBefore) || !bytes.Equal(d.read(t, "A"), aBefore) || !bytes.Equal(d.read(t, "B"), bBefore) {
			t.Fatalf("%s: the refused release changed the system disk", tt.name)
		}
	}

	good := d.release(t, "qemu-q35", "1.3.0", 3)
	start := time.Now()
	id := deployFirmware(good)
	select {
	case <-core.exited:
	case <-time.After(testtool.Timeout):
		t.Fatalf("the core did not exit to reboot within %v; its log:\n%s", testtool.Timeout, core.log)
	}
	core.stopped = true
	var ee *exec.ExitError
	if !errors.As(core.err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("the core exited with %v; want exit status 3 (reboot); its log:\n%s", core.err, core.log)
	}
	t.Logf("release of %d bytes deployed, installed and armed; core exited to reboot after %v", len(good), time.Since(start).Round(time.Millisecond))
	out := c.waitMessage(t, group, id, "rebooting")
	if s, _ := c.status(t, group, id); s != "InProgress" {
		t.Errorf("status before the reboot: %s; want InProgress", out)
	}
	if b := d.read(t, "B"); !bytes.Equal(b[:len(good)], good) || !bytes.Equal(b[len(good):], bBefore[len(good):]) {
		t.Error("slot B does not hold the release verbatim (and nothing past it)")
	}
	if !bytes.Equal(d.read(t, "A"), aBefore) {
		t.Error("the running slot A was written")
	}
	st := d.state(t)
	if st.Active != "A" || st.Trial != "B" || st.TriesLeft != 3 || st.Deployment != id || st.TrialVersion != "1.3.0" || st.TrialSecurityVersion != 3 {
		t.Fatalf("slot state %+v: want slot B armed for deployment %s", st, id)
	}

	// ggboot boots slot B on trial.
	st.TriesLeft--
	d.saveState(t, st)
	f.setConfig(t, "ggcore.ota.slot", "B")
	core = startCore(t, f)
	if s, out := c.waitStatus(t, group, id); s != "Success" || !strings.Contains(out, "1.3.0") {
		t.Fatalf("after the trial boot: %s; want Success\ncore log:\n%s", out, core.log)
	}
	testtool.Eventually(t, "the reported result leaves the slot state", func() bool { return d.state(t).Result == nil })
	if st := d.state(t); st.Active != "B" || st.Trial != "" {
		t.Errorf("slot state after the commit: %+v; want B committed", st)
	}
}
