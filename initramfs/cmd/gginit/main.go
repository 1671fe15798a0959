// Command gginit is PID 1 of the ggcore firmware image. It mounts the
// kernel's file systems and starts ggcore with
// /greengrass/config/config.json; while ggcore loads, it raises a clock
// that is before the image's build time to it, loads the kernel modules
// the image lists and mounts the data partition at /greengrass, which
// ggcore waits for (--wait-fd). Once ggcore is ready (--ready-fd), it
// brings the network up (DHCP unless the kernel command line gives a
// static address).
// gginit restarts ggcore with backoff when it exits. Every step is
// written to the console with the time since the kernel started; a step
// that cannot be done says why and waits, rather than crash-looping.
//
// Kernel command line settings (all optional):
//
//	ggcore.disk=/dev/vda        the data partition (ext4)
//	ggcore.ip=10.0.2.15/24      a static address for the first Ethernet
//	                            interface (default: dhcp, a DHCPv4 lease)
//	ggcore.gw=10.0.2.2          with ggcore.ip: the default gateway
//	ggcore.dns=10.0.2.3         with ggcore.ip: name servers, comma-separated
//	ggcore.trial=1              set by ggboot on a trial boot of an A/B slot:
//	                            the watchdog is petted only while ggcore
//	                            runs and until the trial window has passed
//	                            uncommitted, and an exit of ggcore reboots
//	                            at once
//	ggcore.trialwindow=300      seconds a trial boot has to commit (must
//	                            exceed ggcore.ota.healthDeadlineSeconds);
//	                            committed = the slot state (ggcore.state=,
//	                            else partition 1 of ggcore.system=) shows
//	                            no trial and ggcore.slot= active
//	ggcore.watchdog=60          the watchdog timeout in seconds (0: gginit
//	                            leaves the watchdog alone)
//	ggcore.loglevel=debug       ggcore's --log-level (debug logs each step
//	                            of its start with the time since boot)
//	GODEBUG=...                 passed on to ggcore (inittrace=1 prints
//	                            what its package initialisation costs)
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"

	"github.com/ggcore/ggcore/initramfs/internal/pid1"
)

// Paths inside the image.
const (
	dataDir     = "/greengrass"
	configPath  = dataDir + "/config/config.json"
	ggcoreBin   = "/bin/ggcore"
	modulesList = "/etc/gginit/modules" // kernel modules to load: a line a group, names in order
	softhsmConf = dataDir + "/config/softhsm2.conf"
	// softhsmModule is in the pkcs11 flavor's image only.
	softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"
)

// defaultDisk is the data partition unless ggcore.disk names another.
const defaultDisk = "/dev/vda"

// Restart backoff: doubling from the first to the last; a run longer than
// stableRun resets it.
const (
	firstBackoff = time.Second
	lastBackoff  = time.Minute
	stableRun    = time.Minute
)

func main() {
	say("gginit starting (pid %d)", os.Getpid())
	if err := pid1.MountAll(append(pid1.KernelFS, pid1.Mount{Source: "tmpfs", Target: "/tmp", Type: "tmpfs"})); err != nil {
		halt("cannot mount the kernel file systems: %v", err)
	}
	args := pid1.Cmdline()
	wd := startWatchdog(args)
	disk := setting(args, "ggcore.disk", defaultDisk)
	// ggcore starts first, and the clock's floor, the kernel modules and
	// the data partition come up beside it: loading ggcore's 11 MB binary
	// and initialising its packages take longer under emulation than all
	// of them (the mount included, an ext4 journal replay after a power
	// cut), and ggcore waits for them (supervise's gate) before it reads
	// the clock or anything from the partition.
	//
	// The network comes up once ggcore is ready: ggcore listens on every
	// address (or, see allowNonlocalBind, on one not assigned yet) and its
	// cloud side retries, so it needs no address to start, and a DHCP
	// client run beside its start takes CPU from it (arm64 under TCG,
	// median gginit → ready of two runs of 5 boots each: 322/294 ms with
	// the network beside the start, 246/283 ms with it after).
	supervise(wd, ggcoreArgs(args), ggcoreEnv(), func() error {
		clockFloor()
		loadModules()
		prepareNetwork()
		if err := mountData(disk); err != nil {
			return fmt.Errorf("no data partition: %v; attach the ggprov bundle's disk image as a virtio disk (QEMU: -drive file=data.img,if=virtio,format=raw)", err)
		}
		say("data partition %s mounted at %s", disk, dataDir)
		if _, err := os.Stat(configPath); err != nil {
			return fmt.Errorf("no config: %v; the data partition must hold config/config.json (ggimage disk writes it)", err)
		}
		return nil
	}, func(why string) {
		say("bringing the network up: %s", why)
		startNetwork(args)
	})
}

// ggcoreArgs are ggcore's arguments: the config, and the log level
// ggcore.loglevel= names (debug also logs each step of ggcore's start
// with the time since boot).
func ggcoreArgs(args map[string]string) []string {
	a := []string{"--config", configPath}
	if level := args["ggcore.loglevel"]; level != "" {
		a = append(a, "--log-level", level)
	}
	return a
}

// ggcoreEnv is ggcore's environment. GODEBUG given on the kernel command
// line (which the kernel passes to init) reaches ggcore too:
// GODEBUG=inittrace=1 prints what the Go runtime's package initialisation
// costs. An image with SoftHSM2 (the pkcs11 flavor) points it at the
// data partition's configuration, which names the token directory.
func ggcoreEnv() []string {
	env := []string{"PATH=/bin", "HOME=/tmp"}
	if v, ok := os.LookupEnv("GODEBUG"); ok {
		env = append(env, "GODEBUG="+v)
	}
	if _, err := os.Stat(softhsmModule); err == nil {
		env = append(env, "SOFTHSM2_CONF="+softhsmConf)
	}
	return env
}

// loadModules loads the modules the image lists, with their dependencies.
// The list's lines are groups that share no module: they load at the same
// time (module signature checks are the slow part of an emulated boot).
func loadModules() {
	data, err := os.ReadFile(modulesList)
	if errors.Is(err, os.ErrNotExist) {
		return // a kernel with everything built in
	}
	if err != nil {
		say("kernel modules: %v", err)
		return
	}
	var (
		mu     sync.Mutex
		loaded []string
		wg     sync.WaitGroup
	)
	for _, group := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		wg.Go(func() {
			prober, err := kmodule.NewProber(kmodule.ProbeOpts{})
			if err != nil {
				say("kernel modules: %v", err)
				return
			}
			for _, name := range strings.Fields(group) {
				if err := prober.Probe(name, ""); err != nil && !errors.Is(err, unix.EEXIST) {
					say("kernel module %s: %v", name, err)
					continue
				}
				mu.Lock()
				loaded = append(loaded, name)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	say("kernel modules loaded: %s", strings.Join(loaded, " "))
}

// mountData waits up to 10 s for the disk to appear and mounts it.
func mountData(disk string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(disk); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within 10s", disk)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(disk, dataDir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount %s (ext4) on %s: %w", disk, dataDir, err)
	}
	return nil
}

// supervise runs ggcore for ever, restarting it with backoff and saying
// why each run ended. Its output goes to the console.
//
// The first run starts before the data partition is up: prepare mounts it
// while ggcore loads, and ggcore, started with --wait-fd, reads nothing
// from the partition until gginit closes the pipe it inherited. If
// prepare fails, ggcore is killed and the boot stops with prepare's
// reason. Restarts find the partition mounted and do not wait.
//
// ready runs once, when the first run says it is ready (--ready-fd: it
// writes to a pipe it inherited), or has exited, or readyWait has passed,
// whichever comes first; it is told which.
func supervise(wd *watchdog, args, env []string, prepare func() error, ready func(why string)) {
	var once sync.Once
	readyOnce := func(why string) { once.Do(func() { ready(why) }) }
	backoff := firstBackoff
	for run := 1; ; run++ {
		say("starting ggcore (run %d): %s %s", run, ggcoreBin, strings.Join(args, " "))
		start := time.Now()
		cmd := exec.Command(ggcoreBin, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = env
		var gate, readyPipe *os.File
		if run == 1 {
			gateR, gateW, err := os.Pipe()
			if err != nil {
				halt("cannot make ggcore's start gate: %v", err)
			}
			readyR, readyW, err := os.Pipe()
			if err != nil {
				halt("cannot make ggcore's ready pipe: %v", err)
			}
			cmd.ExtraFiles = []*os.File{gateR, readyW} // fds 3 and 4
			cmd.Args = append(cmd.Args, "--wait-fd", "3", "--ready-fd", "4")
			gate, readyPipe = gateW, readyR
		}
		err := cmd.Start()
		if readyPipe != nil {
			cmd.ExtraFiles[1].Close()
			go func() { readyOnce(waitReady(readyPipe, readyWait)) }()
		}
		if gate != nil {
			cmd.ExtraFiles[0].Close()
			if perr := prepare(); perr != nil {
				if err == nil {
					cmd.Process.Kill()
					cmd.Wait()
				}
				halt("%v", perr)
			}
			gate.Close() // ggcore goes on
		}
		if err == nil {
			wd.running.Store(true)
			go reportMemory(cmd.Process.Pid, 10*time.Second)
			err = cmd.Wait()
		}
		readyOnce("ggcore exited before it was ready")
		ran := time.Since(start)
		// ggcore exits 3 to have the machine rebooted: an image update
		// is armed, or a trial boot failed its health check.
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
			say("ggcore asked for a reboot (exit status 3); syncing and rebooting")
			unix.Sync()
			unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		}
		if ran > stableRun {
			backoff = firstBackoff
		}
		say("ggcore exited after %s: %s; restarting in %s", ran.Round(time.Millisecond), exitReason(err), backoff)
		wd.exited()
		time.Sleep(backoff)
		backoff = min(2*backoff, lastBackoff)
	}
}

// readyWait bounds the wait for ggcore's first run to say it is ready
// before gginit brings the network up anyway.
const readyWait = 10 * time.Second

// waitReady waits, at most max, until ggcore's first run says it is ready
// on r, the read end of the pipe whose write end it holds (ggcore writes
// to it, then closes it), or the pipe reaches end of file without a word
// (ggcore exited); it closes r and says which happened.
func waitReady(r *os.File, max time.Duration) string {
	defer r.Close()
	_ = r.SetReadDeadline(time.Now().Add(max))
	var b [16]byte
	n, err := r.Read(b[:])
	switch {
	case n > 0:
		return "ggcore is ready"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("ggcore has not said it is ready within %s", max)
	default:
		return "ggcore exited before it was ready"
	}
}

// reportMemory logs ggcore's resident memory once, after a while, so that
// a console shows what the core costs.
func reportMemory(pid int, after time.Duration) {
	time.Sleep(after)
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return // it has exited; supervise says so
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			say("ggcore resident memory after %s: %s", after, strings.TrimSpace(v))
		}
	}
}

// exitReason says why a run of ggcore ended.
func exitReason(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0 (it was told to stop)"
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		if ee.ExitCode() == 1 {
			return "exit status 1: it refused to start; its error is above"
		}
		return ee.String()
	}
	return err.Error()
}

// console is this program's console (pid1.Console).
var console = pid1.Console{Name: "gginit"}

// say writes one console line with the time since the kernel started.
func say(format string, args ...any) { console.Say(format, args...) }

// halt says why the boot cannot go on and waits for ever.
func halt(format string, args ...any) { console.Halt(format, args...) }

func parseCmdline(line string) map[string]string { return pid1.ParseCmdline(line) }

func setting(args map[string]string, key, def string) string { return pid1.Setting(args, key, def) }
