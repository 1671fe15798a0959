package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/sysdisk"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/ota/slot"
)

// otaTimeout bounds a boot through the first stage that may first spend a
// trial slot's tries: up to four boots under TCG.
const otaTimeout = 4 * bootTimeout

// otaSystem is the first stage's image for one arch: ggboot's initramfs,
// the kernel it and slot A boot, and a system disk with the tpm image as a
// signed release in slot A (initramfs/system-disk.sh).
type otaSystem struct {
	arch, ggboot, kernel, disk, key string
}

var otaSystems = struct {
	sync.Mutex
	built map[string]*otaSystem
	errs  map[string]error
}{built: map[string]*otaSystem{}, errs: map[string]error{}}

func systemImage(t testing.TB, arch string) *otaSystem {
	t.Helper()
	requireTools(t, arch)
	images.Lock() // system-disk.sh builds the image itself when missing
	defer images.Unlock()
	otaSystems.Lock()
	defer otaSystems.Unlock()
	if err := otaSystems.errs[arch]; err != nil {
		t.Fatalf("system disk %s: %v", arch, err)
	}
	if s := otaSystems.built[arch]; s != nil {
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.root, "initramfs", "system-disk.sh"), "tpm", arch, e.build)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	if out, err := cmd.CombinedOutput(); err != nil {
		otaSystems.errs[arch] = fmt.Errorf("%v\n%s", err, out)
		t.Fatalf("system-disk.sh tpm %s: %v", arch, otaSystems.errs[arch])
	}
	img := filepath.Join(e.build, "images")
	s := &otaSystem{arch: arch, ggboot: filepath.Join(img, "ggboot-tpm-"+arch+".cpio"), kernel: filepath.Join(img, "vmlinuz-"+arch),
		disk: filepath.Join(img, "system-tpm-"+arch+".img"), key: filepath.Join(e.build, "release-key.pem")}
	otaSystems.built[arch] = s
	return s
}

// newDisk returns a fresh copy of the system disk.
func (s *otaSystem) newDisk(t testing.TB) string {
	t.Helper()
	src, err := os.Open(s.disk)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(t.TempDir(), "system.img")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	return p
}

// boot starts QEMU through the first stage with the system disk; a guest
// reboot boots again.
func (s *otaSystem) boot(t testing.TB, data, system string) *vm {
	t.Helper()
	return boot(t, s.arch, s.ggboot, s.kernel, data, "", "GGCORE_QEMU_REBOOT=1", "GGCORE_SYSTEM_DISK="+system)
}

// partitionOffset reads where MBR partition n (1..4) of disk starts.
func partitionOffset(t testing.TB, disk string, n int) int64 {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	return int64(binary.LittleEndian.Uint32(mbr[446+16*(n-1)+8:])) * 512
}

func stateStore(t testing.TB, disk string) *slot.Store {
	t.Helper()
	st, err := slot.OpenAt(disk, partitionOffset(t, disk, 1))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// diskState reads the slot state of a system disk (QEMU stopped): the
// valid copy with the highest sequence, and whether there is one.
func diskState(t testing.TB, disk string) (slot.State, bool) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	area := make([]byte, slot.Size)
	if _, err := f.ReadAt(area, partitionOffset(t, disk, 1)); err != nil {
		t.Fatal(err)
	}
	st, _, _, ok := slot.Pick(area)
	return st, ok
}

// stateOrFresh is the disk's slot state, or slot.Fresh() when no copy is
// valid (never written, or its first write torn): ggboot then boots slot A.
func stateOrFresh(t testing.TB, disk string) slot.State {
	t.Helper()
	if st, ok := diskState(t, disk); ok {
		return st
	}
	return slot.Fresh()
}

// readState is the disk's slot state; it fails unless a valid copy holds it.
func readState(t testing.TB, disk string) slot.State {
	t.Helper()
	st, ok := diskState(t, disk)
	if !ok {
		t.Fatal("no valid slot state copy on the system disk")
	}
	return st
}

func saveState(t testing.TB, disk string, st slot.State) {
	t.Helper()
	s := stateStore(t, disk)
	defer s.Close()
	if _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
}

// armBadTrial writes a release whose ggcore cannot start into slot B and
// arms it for trial, as the core does after an install.
func (s *otaSystem) armBadTrial(t testing.TB, disk, rel string) {
	t.Helper()
	data, err := os.ReadFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, partitionOffset(t, disk, 3)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	saveState(t, disk, badTrial)
}

var badTrial = slot.State{Active: slot.A, Trial: slot.B, TriesLeft: slot.DefaultTries, Deployment: "d-bad",
	TrialVersion: "1.1.0-bad", TrialSecurityVersion: 2}

var badReleases = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// badRelease is a signed release (same key, kernel and compatible as slot
// A) whose initramfs runs gginit with a /bin/ggcore that is not a program:
// every start of the core fails, as a broken update's would.
func (s *otaSystem) badRelease(t testing.TB) string {
	t.Helper()
	badReleases.Lock()
	defer badReleases.Unlock()
	if p := badReleases.m[s.arch]; p != "" {
		return p
	}
	dir, err := os.MkdirTemp(e.build, "bad-"+s.arch+"-")
	if err != nil {
		t.Fatal(err)
	}
	gginit := filepath.Join(dir, "gginit")
	build := exec.Command("go", "build", "-trimpath", "-o", gginit, "./initramfs/cmd/gginit")
	build.Dir = e.root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+s.arch)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gginit: %v\n%s", err, out)
	}
	bin, _ := os.ReadFile(gginit)
	var cpio bytes.Buffer
	if err := sysdisk.WriteCPIO(&cpio, []sysdisk.File{sysdisk.Console, {Path: "init", Mode: 0o755, Data: bin},
		{Path: "bin/ggcore", Mode: 0o755, Data: []byte("this is not a program\n")},
		{Path: "etc/gginit/build-time", Mode: 0o644, Data: []byte(strconv.FormatInt(time.Now().Unix(), 10) + "\n")}}); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "bad.cpio")
	os.WriteFile(initrd, cpio.Bytes(), 0o644)
	board := map[string]string{"amd64": "qemu-q35", "arm64": "qemu-virt"}[s.arch]
	rel := filepath.Join(dir, "bad.rel")
	run(t, e.ggprov, "release", "sign", "--kernel", s.kernel, "--initramfs", initrd, "--arch", s.arch, "--board", board,
		"--flavor", "tpm", "--version", badTrial.TrialVersion, "--security-version", "2", "--key", s.key, "--out", rel)
	badReleases.m[s.arch] = rel
	return rel
}

var firstStageRE = regexp.MustCompile(`ggboot: kexec slot ([AB]) \(first stage (\d+) ms\)`)
var signatureRE = regexp.MustCompile(`ggboot: slot [AB] verified: signature ([0-9.]+[µm]?s)`)

// TestOtaFirstStage boots each arch through ggboot: it verifies slot A's
// release, kexecs it, and ggcore comes up and routes.
func TestOtaFirstStage(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			s := systemImage(t, arch)
			b := provision(t, "file")
			v := s.boot(t, b.disk(t, nil), s.newDisk(t))
			v.waitFor(t, "ggboot: slot A committed, version 1.0.0 sv 1", bootTimeout)
			ready := v.waitFor(t, "ggcore ready", bootTimeout)
			c := v.console.String()
			if !strings.Contains(c, "ggcore.slot=A") || strings.Contains(c, "ggcore.trial=1") {
				t.Errorf("slot A was not booted as committed slot A:\n%s", c)
			}
			if m := firstStageRE.FindStringSubmatch(c); m != nil {
				t.Logf("%s: first stage (ggboot start to kexec) %s ms", arch, m[2])
			}
			if m := signatureRE.FindStringSubmatch(c); m != nil {
				t.Logf("%s: signature check in ggboot %s", arch, m[1])
			}
			t.Logf("%s: QEMU start to ggcore ready through ggboot: %v", arch, ready.Round(time.Millisecond))
			assertRouting(t, b, v)
		})
	}
}

// TestOtaRollback arms slot B with a release whose ggcore cannot start: it
// is tried three times, then slot A boots and the state holds the failure.
func TestOtaRollback(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			s := systemImage(t, arch)
			b := provision(t, "file")
			disk := s.newDisk(t)
			s.armBadTrial(t, disk, s.badRelease(t))
			v := s.boot(t, b.disk(t, nil), disk)
			first := v.waitFor(t, "ggboot: slot B trial 1 of 3, version 1.1.0-bad sv 2", bootTimeout)
			v.waitFor(t, "ggboot: slot B trial 3 of 3", otaTimeout)
			back := v.waitFor(t, "ggboot: slot A committed", otaTimeout)
			ready := v.waitFor(t, "ggcore ready", bootTimeout)
			t.Logf("%s: bad boot to back on slot A: %v (to ggcore ready on slot A: %v)", arch,
				(back - first).Round(time.Millisecond), (ready - first).Round(time.Millisecond))
			if c := v.console.String(); strings.Contains(c, "trial 4 of") {
				t.Errorf("slot B was tried more than 3 times:\n%s", c)
			}
			v.stop()
			st := readState(t, disk)
			if st.Active != slot.A || st.Trial != "" || st.Result == nil {
				t.Fatalf("state after the rollback = %+v, want slot A active, no trial, a result", st)
			}
			if r := st.Result; r.Status != slot.StatusFailure || r.Deployment != "d-bad" || r.Slot != slot.B ||
				r.Version != "1.1.0-bad" || !strings.Contains(r.Reason, "did not become healthy in 3 boots") {
				t.Fatalf("result = %+v, want Failure of d-bad, slot B, 1.1.0-bad, not healthy in 3 boots", *r)
			}
		})
	}
}

// powerCutPoints is how many times TestOtaPowerCut cuts the power per arch
// (GGCORE_POWERCUT_POINTS; make powercut runs 100).
func powerCutPoints(t testing.TB) int {
	if v := os.Getenv("GGCORE_POWERCUT_POINTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("GGCORE_POWERCUT_POINTS=%q is not a positive number", v)
		}
		return n
	}
	return 5
}

// TestOtaPowerCut kills QEMU at random moments while a (bad) trial slot is
// being tried: right after the first stage announces a slot state write,
// or after gginit announces the reboot that spends a try, with a random
// delay. Every boot after a cut must reach a healthy slot (ggcore ready)
// and leave a valid slot state.
func TestOtaPowerCut(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			s := systemImage(t, arch)
			b := provision(t, "file")
			data := b.disk(t, nil)
			disk := s.newDisk(t)
			rel := s.badRelease(t)
			s.armBadTrial(t, disk, rel)
			seed := uint64(time.Now().UnixNano())
			rng := rand.New(rand.NewPCG(seed, 14))
			points := powerCutPoints(t)
			t.Logf("%s: %d cut points, seed %d", arch, points, seed)
			healthy := 0
			for i := range points {
				st := readState(t, disk)
				if st.Trial == "" {
					// Armed again with 1..3 tries: every path, fewer boots.
					st = badTrial
					st.TriesLeft = 1 + rng.IntN(slot.DefaultTries)
					saveState(t, disk, st)
				}
				markers := []string{"ggboot: saving slot state"}
				if st.TriesLeft > 0 {
					markers = append(markers, "gginit: trial boot: ggcore exited", "ggboot: slot B trial")
				}
				marker := markers[rng.IntN(len(markers))]
				delay := time.Duration(rng.IntN(1500)) * time.Millisecond
				v := s.boot(t, data, disk)
				v.waitFor(t, marker, otaTimeout)
				time.Sleep(delay) // the cut itself: a random moment after the marker
				v.stop()
				after := readState(t, disk)
				v = s.boot(t, data, disk)
				v.waitFor(t, "ggcore ready", otaTimeout)
				v.stop()
				healthy++
				st2 := readState(t, disk)
				t.Logf("%s cut %d: %q +%v: state after the cut %s; after the next boot %s", arch, i+1, marker, delay, brief(after), brief(st2))
			}
			t.Logf("power cut %s: %d of %d cut points, every following boot reached a healthy slot", arch, healthy, points)
		})
	}
}

func brief(st slot.State) string {
	b, _ := json.Marshal(st)
	return string(b)
}

// TestOtaUpdate: a good release deployed through ggcloud (group deploy
// --firmware) is installed by the core in slot A into slot B, tried by
// ggboot, found healthy by the core and committed: the deployment reports
// Success, the TPM counter holds the new security version, and the next
// boot is slot B as the committed slot.
func TestOtaUpdate(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			s := systemImage(t, arch)
			b := provision(t, "tpm")
			c := startGuestCloud(t, b)
			cli := func(args ...string) string { t.Helper(); return c.cli(t, args...) }
			group := struct{ GroupId string }{c.groupID}
			dataDisk := b.disk(t, func(cfg map[string]any) {
				cfg["ggcore"].(map[string]any)["deploymentPollSeconds"] = 1
			})
			system := s.newDisk(t)

			// Release 1.1.0, security version 2: slot A's image, signed again.
			var manifest struct{ Image string }
			mj, _ := os.ReadFile(filepath.Join(e.build, "images", "ggcore-tpm-"+arch+".json"))
			if err := json.Unmarshal(mj, &manifest); err != nil {
				t.Fatal(err)
			}
			rel := filepath.Join(t.TempDir(), "1.1.0.rel")
			board := map[string]string{"amd64": "qemu-q35", "arm64": "qemu-virt"}[arch]
			run(t, e.ggprov, "release", "sign", "--kernel", s.kernel, "--initramfs", filepath.Join(e.build, "images", manifest.Image),
				"--arch", arch, "--board", board, "--flavor", "tpm", "--version", "1.1.0", "--security-version", "2", "--key", s.key, "--out", rel)

			v := boot(t, arch, s.ggboot, s.kernel, dataDisk, b.tpm.Dir, "GGCORE_QEMU_REBOOT=1", "GGCORE_SYSTEM_DISK="+system)
			v.waitFor(t, "ggboot: slot A committed", bootTimeout)
			v.waitFor(t, "ggcore ready", bootTimeout)
			start := time.Now()
			id := strings.Fields(cli("group", "deploy", group.GroupId, "--firmware", rel))
			deployment := id[len(id)-1]
			var status string
			if !testtool.Poll(otaTimeout, func() bool {
				status = cli("deployment", "status", group.GroupId, deployment)
				return strings.Contains(status, "Success") || strings.Contains(status, "Failure")
			}) || !strings.Contains(status, "Success") {
				t.Fatalf("deployment %s: %s\nconsole:\n%s", deployment, status, v.console)
			}
			t.Logf("%s: deploy to Success (install, reboot, trial, commit) %v", arch, time.Since(start).Round(time.Millisecond))
			v.waitFor(t, "ggboot: slot B trial 1 of 3, version 1.1.0 sv 2", bootTimeout)
			v.waitFor(t, "ggboot: measured slot B into PCR 13", bootTimeout)
			v.stop()
			st := readState(t, system)
			if st.Active != slot.B || st.Trial != "" {
				t.Fatalf("state after the update = %+v, want slot B committed", st)
			}
			// The next boot: slot B as the committed slot, the counter at 2.
			v = boot(t, arch, s.ggboot, s.kernel, dataDisk, b.tpm.Dir, "GGCORE_QEMU_REBOOT=1", "GGCORE_SYSTEM_DISK="+system)
			v.waitFor(t, "ggboot: TPM security version floor 2", bootTimeout)
			v.waitFor(t, "ggboot: slot B committed, version 1.1.0 sv 2", bootTimeout)
			// The core reads the measurement back and finds the value
			// `ggprov release pcr` publishes for the release.
			v.waitFor(t, "PCR 13 matches the release", bootTimeout)
			v.waitFor(t, "ggcore ready", bootTimeout)
		})
	}
}

// hangTrial is the state armHangTrial leaves: slot B on trial with a core
// that hangs.
var hangTrial = slot.State{Active: slot.A, Trial: slot.B, TriesLeft: slot.DefaultTries, Deployment: "d-hang",
	TrialVersion: "1.1.0-hang", TrialSecurityVersion: 2}

// hangRelease is a signed release (same key, kernel and compatible as slot
// A) whose initramfs runs gginit with a /bin/ggcore that starts and then
// hangs: alive for ever, never healthy, never committing.
func (s *otaSystem) hangRelease(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hang\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(`// Command hang stands in for a ggcore that hangs.
package main

import (
	"fmt"
	"time"
)

func main() {
	fmt.Println("hang: started; never healthy")
	for {
		time.Sleep(time.Hour)
	}
}
`), 0o644)
	bins := map[string]string{"gginit": "./initramfs/cmd/gginit", "ggcore": "."}
	data := map[string][]byte{}
	for name, pkg := range bins {
		out := filepath.Join(dir, name)
		build := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		build.Dir = e.root
		if pkg == "." {
			build.Dir = src
		}
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+s.arch, "GOFLAGS=")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
		data[name], _ = os.ReadFile(out)
	}
	var cpio bytes.Buffer
	if err := sysdisk.WriteCPIO(&cpio, []sysdisk.File{sysdisk.Console, {Path: "init", Mode: 0o755, Data: data["gginit"]},
		{Path: "bin/ggcore", Mode: 0o755, Data: data["ggcore"]},
		{Path: "etc/gginit/build-time", Mode: 0o644, Data: []byte(strconv.FormatInt(time.Now().Unix(), 10) + "\n")}}); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "hang.cpio")
	if err := os.WriteFile(initrd, cpio.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	board := map[string]string{"amd64": "qemu-q35", "arm64": "qemu-virt"}[s.arch]
	rel := filepath.Join(dir, "hang.rel")
	run(t, e.ggprov, "release", "sign", "--kernel", s.kernel, "--initramfs", initrd, "--arch", s.arch, "--board", board,
		"--flavor", "tpm", "--version", hangTrial.TrialVersion, "--security-version", "2", "--key", s.key, "--out", rel)
	return rel
}

// TestOtaHang arms slot B with a release whose ggcore hangs (alive, never
// healthy): gginit pets the watchdog only for the trial window, so the
// watchdog resets each try; after three tries slot A boots and the state
// holds the failure.
func TestOtaHang(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			s := systemImage(t, arch)
			b := provision(t, "file")
			disk := s.newDisk(t)
			s.armBadTrial(t, disk, s.hangRelease(t))
			saveState(t, disk, hangTrial)
			v := boot(t, arch, s.ggboot, s.kernel, b.disk(t, nil), "", "GGCORE_QEMU_REBOOT=1", "GGCORE_SYSTEM_DISK="+disk,
				"GGCORE_QEMU_APPEND=ggcore.trialwindow=5 ggcore.watchdog=10")
			first := v.waitFor(t, "ggboot: slot B trial 1 of 3, version 1.1.0-hang sv 2", bootTimeout)
			v.waitFor(t, "hang: started; never healthy", bootTimeout)
			v.waitFor(t, "gginit: trial boot not committed within 5 s; letting the watchdog reset the machine", bootTimeout)
			v.waitFor(t, "ggboot: slot B trial 3 of 3", otaTimeout)
			back := v.waitFor(t, "ggboot: slot A committed", otaTimeout)
			ready := v.waitFor(t, "ggcore ready", bootTimeout)
			t.Logf("%s: hung trial to back on slot A: %v (to ggcore ready on slot A: %v)", arch,
				(back - first).Round(time.Millisecond), (ready - first).Round(time.Millisecond))
			c := v.console.String()
			if strings.Contains(c, "trial 4 of") {
				t.Errorf("slot B was tried more than 3 times:\n%s", c)
			}
			if n := strings.Count(c, "letting the watchdog reset the machine"); n != slot.DefaultTries {
				t.Errorf("the trial window passed %d times, want %d (once a try):\n%s", n, slot.DefaultTries, c)
			}
			v.stop()
			st := readState(t, disk)
			if st.Active != slot.A || st.Trial != "" || st.Result == nil {
				t.Fatalf("state after the hung trial = %+v, want slot A active, no trial, a result", st)
			}
			if r := st.Result; r.Status != slot.StatusFailure || r.Deployment != "d-hang" || r.Slot != slot.B ||
				r.Version != "1.1.0-hang" || !strings.Contains(r.Reason, "did not become healthy in 3 boots") {
				t.Fatalf("result = %+v, want Failure of d-hang, slot B, 1.1.0-hang, not healthy in 3 boots", *r)
			}
		})
	}
}

// TestOtaPowerCutInstall kills QEMU at random moments while the core
// installs a release into the inactive slot (from the log line that
// starts the install to a little past its end, when the trial is armed
// and the core reboots). The running slot is never written and the slot
// state changes in one write at the end, so every following boot must
// reach a healthy slot: the old one, or the new release on trial. Each
// cut point deploys a new release (security version one higher), since
// the core leaves alone a release that already runs.
func TestOtaPowerCutInstall(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			s := systemImage(t, arch)
			b := provision(t, "tpm")
			c := startGuestCloud(t, b)
			dataDisk := b.disk(t, func(cfg map[string]any) {
				cfg["ggcore"].(map[string]any)["deploymentPollSeconds"] = 1
			})
			system := s.newDisk(t)
			var manifest struct{ Image string }
			mj, _ := os.ReadFile(filepath.Join(e.build, "images", "ggcore-tpm-"+arch+".json"))
			if err := json.Unmarshal(mj, &manifest); err != nil {
				t.Fatal(err)
			}
			board := map[string]string{"amd64": "qemu-q35", "arm64": "qemu-virt"}[arch]
			seed := uint64(time.Now().UnixNano())
			rng := rand.New(rand.NewPCG(seed, 15))
			points := powerCutPoints(t)
			t.Logf("%s: %d cut points during installs, seed %d", arch, points, seed)
			for i := range points {
				version, sv := fmt.Sprintf("1.%d.0", i+1), strconv.Itoa(i+2)
				rel := filepath.Join(t.TempDir(), version+".rel")
				run(t, e.ggprov, "release", "sign", "--kernel", s.kernel, "--initramfs", filepath.Join(e.build, "images", manifest.Image),
					"--arch", arch, "--board", board, "--flavor", "tpm", "--version", version, "--security-version", sv, "--key", s.key, "--out", rel)
				v := boot(t, arch, s.ggboot, s.kernel, dataDisk, b.tpm.Dir, "GGCORE_QEMU_REBOOT=1", "GGCORE_SYSTEM_DISK="+system)
				v.waitFor(t, "ggcore ready", otaTimeout)
				if stateOrFresh(t, system).Trial != "" {
					// The last cut armed a trial: the core installs nothing
					// until it committed (or ggboot gave it up).
					v.waitFor(t, "trial boot committed", otaTimeout)
				}
				c.cli(t, "group", "deploy", c.groupID, "--firmware", rel)
				// The cut: a random moment of writing the slot, or of the
				// core's stop for the reboot once the trial is armed.
				marker, spread := "installing release", 2500
				if rng.IntN(3) == 0 {
					marker, spread = "the slot is armed for a trial boot", 1000
				}
				v.waitFor(t, marker, otaTimeout)
				delay := time.Duration(rng.IntN(spread)) * time.Millisecond
				time.Sleep(delay)
				v.stop()
				// A disk whose state was never written (the first install
				// cut before it armed the trial) boots slot A, as ggboot does.
				after := stateOrFresh(t, system)
				v = boot(t, arch, s.ggboot, s.kernel, dataDisk, b.tpm.Dir, "GGCORE_QEMU_REBOOT=1", "GGCORE_SYSTEM_DISK="+system)
				v.waitFor(t, "ggcore ready", otaTimeout)
				v.stop()
				t.Logf("%s cut %d: release %s, %q +%v: state after the cut %s; after the next boot %s",
					arch, i+1, version, marker, delay, brief(after), brief(stateOrFresh(t, system)))
			}
			t.Logf("power cut during install %s: %d of %d cut points, every following boot reached a healthy slot", arch, points, points)
		})
	}
}
