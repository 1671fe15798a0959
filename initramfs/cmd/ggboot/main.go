// Command ggboot is the first stage of a ggcore gateway: /init of a small
// initramfs that the firmware (or QEMU's direct kernel boot) starts with
// ggcore's kernel. It is never updated over the air.
//
// It reads the A/B slot state from the system disk (package ota/slot),
// applies the trial logic (a slot armed for trial gets slot.DefaultTries
// boots; after that the failure is recorded and the committed slot boots),
// verifies the chosen slot's release (package ota/release: signature with a
// key built into this initramfs, compatibility, security version not below
// the TPM's NV counter, SHA-256 of every part), extends PCR 13 with the
// SHA-256 of the release manifest when a TPM is present, arms the watchdog
// and kexecs the slot's kernel and initramfs with its own kernel command line
// plus ggcore.slot=A|B (and ggcore.trial=1 on a trial boot). Every decision
// is one console line.
//
// Kernel command line settings:
//
//	ggcore.system=/dev/vdb   the system disk: partition 1 slot state,
//	                         2 slot A, 3 slot B (default /dev/vdb)
//	ggcore.state=DEV[@OFF]   the slot state elsewhere: a device, or a byte
//	                         offset of one (default: partition 1)
//	ggcore.watchdog=60       watchdog timeout in seconds (0: not armed)
//
// Files in its initramfs:
//
//	/etc/ggcore/release-keys/*.pem   trusted release public keys
//	/etc/ggboot/compatible.json      {"arch","board","flavor"} of this gateway
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ggcore/ggcore/initramfs/internal/pid1"
	"github.com/ggcore/ggcore/ota/release"
	"github.com/ggcore/ggcore/ota/slot"
	"github.com/ggcore/ggcore/tpm"
)

// Paths and defaults.
const (
	keysGlob        = "/etc/ggcore/release-keys/*.pem"
	compatiblePath  = "/etc/ggboot/compatible.json"
	partsDir        = "/run/ggboot"
	tpmDevice       = "/dev/tpmrm0"
	watchdogDevice  = "/dev/watchdog"
	defaultSystem   = "/dev/vdb"
	defaultWatchdog = 60
	diskWait        = 10 * time.Second
)

func main() {
	start := pid1.Uptime()
	say("ggboot starting")
	if err := pid1.MountAll(pid1.KernelFS); err != nil {
		halt("cannot mount the kernel file systems: %v", err)
	}
	line, _ := os.ReadFile("/proc/cmdline")
	p, err := prepare(string(line))
	if err != nil {
		halt("%v", err)
	}
	armWatchdog(p.watchdog)
	cmdline := slotCmdline(string(line), p.plan)
	if err := kexecLoad(p.plan.Image, cmdline); err != nil {
		halt("kexec load of slot %s: %v", p.plan.Slot, err)
	}
	say("kexec slot %s (first stage %.0f ms): %s", p.plan.Slot, (pid1.Uptime()-start)*1000, cmdline)
	unix.Sync()
	err = unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC)
	halt("kexec of slot %s: %v", p.plan.Slot, err)
}

// prepared is what the first stage decided.
type prepared struct {
	plan     *plan
	watchdog int
}

// prepare does everything up to the kexec: settings, slot state, trial
// logic, verification and measurement.
func prepare(line string) (*prepared, error) {
	args := parseCmdline(line)
	system := setting(args, "ggcore.system", defaultSystem)
	wd, err := strconv.Atoi(setting(args, "ggcore.watchdog", strconv.Itoa(defaultWatchdog)))
	if err != nil || wd < 0 {
		return nil, fmt.Errorf("ggcore.watchdog=%q is not a number of seconds", args["ggcore.watchdog"])
	}
	keys, _ := filepath.Glob(keysGlob)
	verifier, err := release.LoadVerifier(keys...)
	if err != nil {
		return nil, fmt.Errorf("no release key in this initramfs (%s): %v", keysGlob, err)
	}
	want, err := readCompatible(compatiblePath)
	if err != nil {
		return nil, err
	}
	statePart, stateOffset, err := slot.ParseLocation(setting(args, "ggcore.state", slot.Partition(system, 1)))
	if err != nil {
		return nil, err
	}
	if err := waitFor(statePart, diskWait); err != nil {
		return nil, fmt.Errorf("no system disk: %v; attach it as a virtio disk and name it with ggcore.system=", err)
	}
	floor, haveTPM, err := securityFloor()
	if err != nil {
		return nil, err
	}
	store, err := slot.OpenAt(statePart, stateOffset)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	st, err := store.Load()
	if err != nil {
		return nil, err
	}
	sv := &slotVerifier{verifier: verifier, want: want, floor: floor, dir: partsDir, say: say,
		device: func(s string) string {
			if s == slot.B {
				return slot.Partition(system, 3)
			}
			return slot.Partition(system, 2)
		}}
	c := &chooser{save: store.Save, verify: sv.verify, say: say, now: time.Now}
	pl, err := c.choose(st)
	if err != nil {
		return nil, err
	}
	if haveTPM {
		if err := tpm.ExtendPCR(tpmDevice, tpm.BootPCR, pl.Image.Digest); err != nil {
			say("WARNING: measuring slot %s into PCR %d failed: %v", pl.Slot, tpm.BootPCR, err)
		} else {
			say("measured slot %s into PCR %d: manifest sha256 %x", pl.Slot, tpm.BootPCR, pl.Image.Digest)
		}
	}
	return &prepared{plan: pl, watchdog: wd}, nil
}

// securityFloor reads the TPM's NV counter: the lowest security version
// this gateway boots. No TPM, or no counter defined yet, is 0.
func securityFloor() (floor uint32, haveTPM bool, err error) {
	if _, err := os.Stat(tpmDevice); err != nil {
		say("no TPM (%s): security version floor 0", tpmDevice)
		return 0, false, nil
	}
	var v uint64
	var defined bool
	for try := 1; ; try++ {
		v, defined, err = tpm.ReadCounter(tpmDevice)
		if err == nil || try == 3 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return 0, true, fmt.Errorf("cannot read the TPM's security version counter: %v", err)
	}
	if v > release.MaxSecurityVersion {
		v = release.MaxSecurityVersion
	}
	say("TPM security version floor %d (counter defined: %t)", v, defined)
	return uint32(v), true, nil
}

func readCompatible(path string) (release.Compatible, error) {
	var c release.Compatible
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("this initramfs does not say what it boots: %v", err)
	}
	if err := json.Unmarshal(data, &c); err != nil || c.Arch == "" || c.Board == "" || c.Flavor == "" {
		return c, fmt.Errorf("%s: want {\"arch\",\"board\",\"flavor\"}: %v", path, err)
	}
	return c, nil
}

// slotCmdline is the first stage's own command line without earlier slot
// settings, plus the chosen slot's.
func slotCmdline(line string, p *plan) string {
	var words []string
	for _, w := range strings.Fields(line) {
		k, _, _ := strings.Cut(w, "=")
		if k == "ggcore.slot" || k == "ggcore.trial" {
			continue
		}
		words = append(words, w)
	}
	words = append(words, "ggcore.slot="+p.Slot)
	if p.Trial {
		words = append(words, "ggcore.trial=1")
	}
	return strings.Join(words, " ")
}

func waitFor(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// armWatchdog starts the hardware watchdog with a timeout of secs. The
// device stays open: it runs until the kexec (the kernel stops it on the
// way) and the slot's gginit opens it again.
func armWatchdog(secs int) {
	if secs == 0 {
		say("watchdog not armed (ggcore.watchdog=0)")
		return
	}
	f, err := os.OpenFile(watchdogDevice, os.O_WRONLY, 0)
	if err != nil {
		say("no watchdog: %v", err)
		return
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
		say("watchdog: set timeout %d s: %v", secs, err)
	}
	say("watchdog armed: %d s", secs)
	// f is deliberately left open: closing it without the magic character
	// keeps the watchdog running anyway, and nothing else runs here.
	_ = f
}

func kexecLoad(img *image, cmdline string) error {
	k, err := os.Open(img.Kernel)
	if err != nil {
		return err
	}
	defer k.Close()
	i, err := os.Open(img.Initrd)
	if err != nil {
		return err
	}
	defer i.Close()
	err = unix.KexecFileLoad(int(k.Fd()), int(i.Fd()), cmdline, 0)
	if errors.Is(err, unix.ENOEXEC) && runtime.GOARCH == "amd64" {
		// x86_64's kexec_file_load takes only a kernel that may be loaded
		// anywhere: ggcore's kernels are built with CONFIG_RELOCATABLE=y.
		return fmt.Errorf("kexec_file_load: %w: the slot's kernel is not relocatable (build it with CONFIG_RELOCATABLE=y)", err)
	}
	return err
}

// console is this program's console (pid1.Console).
var console = pid1.Console{Name: "ggboot"}

// say writes one console line with the time since the kernel started.
func say(format string, args ...any) { console.Say(format, args...) }

// halt says why the boot cannot go on and waits for ever.
func halt(format string, args ...any) { console.Halt(format, args...) }

func parseCmdline(line string) map[string]string { return pid1.ParseCmdline(line) }

func setting(args map[string]string, key, def string) string { return pid1.Setting(args, key, def) }
