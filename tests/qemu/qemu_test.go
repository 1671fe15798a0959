// Package qemu boots the ggcore firmware image under QEMU (TCG) and drives
// it from the host: swtpm as the guest's TPM, a data disk made from a
// ggprov bundle, and mosquitto clients through QEMU's hostfwd on
// 127.0.0.1.
package qemu

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// bootTimeout bounds a boot to `ggcore ready` under TCG (arm64 is the
// slowest).
const bootTimeout = 4 * time.Minute

// guestTimeout bounds what a device does against a booted guest (TLS
// handshake, SUBACK, a routed message): the guest is emulated, and on a
// loaded 2-core machine a handshake in it can take tens of seconds.
const guestTimeout = 3 * time.Minute

// env is what TestMain prepares for every test: the repository, ggprov,
// and a build directory whose kernel cache is the repository's.
type env struct {
	root   string // repository root
	ggprov string
	build  string // holds images/ and kernel/ (a link to the repository's cache)
}

// e is set by TestMain before any test runs and only read afterwards.
var e env

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "qemu: go env GOMOD: %v\n", err)
		return 1
	}
	e.root = filepath.Dir(strings.TrimSpace(string(out)))
	tmp, err := os.MkdirTemp("", "ggcore-qemu-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	e.ggprov = filepath.Join(tmp, "ggprov")
	if out, err := exec.Command("go", "build", "-o", e.ggprov, "github.com/ggcore/ggcore/tools/ggprov").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "qemu: build ggprov: %v\n%s", err, out)
		return 1
	}
	e.build = filepath.Join(tmp, "build")
	cache := filepath.Join(e.root, "build", "kernel")
	if err := os.MkdirAll(cache, 0o755); err == nil {
		os.MkdirAll(e.build, 0o755)
		os.Symlink(cache, filepath.Join(e.build, "kernel"))
	}
	return m.Run()
}

// images builds each image once per test binary.
var images = struct {
	sync.Mutex
	built map[string]error
}{built: map[string]error{}}

// image builds (once) FLAVOR/ARCH into the shared build directory and
// returns the paths of the initramfs and the kernel.
func image(t testing.TB, flavor, arch string) (initrd, kernel string) {
	t.Helper()
	requireTools(t, arch)
	images.Lock()
	defer images.Unlock()
	key := flavor + "/" + arch
	err, done := images.built[key]
	if !done {
		err = buildImage(e.build, flavor, arch)
		images.built[key] = err
	}
	if err != nil {
		t.Fatalf("build image %s: %v", key, err)
	}
	return initrdPath(t, e.build, flavor, arch), filepath.Join(e.build, "images", "vmlinuz-"+arch)
}

// buildImage runs initramfs/build.sh. Its first run on a machine also
// compiles the kernel (`make kernel`, cached in build/kernel): up to half
// an hour on a loaded 2-core machine.
func buildImage(build, flavor, arch string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.root, "initramfs", "build.sh"), flavor, arch, build)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

func requireTools(t testing.TB, arch string) {
	t.Helper()
	for _, p := range []string{"lz4", "mke2fs", "depmod", "debugfs", "swtpm", "mosquitto_pub", "mosquitto_sub"} {
		testtool.Require(t, p)
	}
	if arch == "arm64" {
		testtool.Require(t, "qemu-system-aarch64")
	} else {
		testtool.Require(t, "qemu-system-x86_64")
	}
}

// bundle is a ggprov bundle for the image: core "gw", devices sensor,
// display and other; sensor → display on sensors/sensor/#.
type bundle struct {
	dir     string
	tpm     *testtool.SWTPM // nil for file keys
	pinFile string
	token   *testtool.Token
}

func provision(t testing.TB, keyStore string) *bundle {
	t.Helper()
	b := &bundle{dir: filepath.Join(t.TempDir(), "bundle")}
	args := []string{"init", "--dir", b.dir, "--core", "gw", "--device", "sensor", "--device", "display", "--device", "other",
		"--bind", "0.0.0.0"}
	switch keyStore {
	case "tpm":
		b.tpm = testtool.StartSWTPM(t, "unix")
		args = append(args, "--key-store", "tpm", "--tpm-device", b.tpm.Device)
	case "pkcs11":
		b.token = testtool.NewSoftHSMToken(t, "gw-token", "4711")
		b.pinFile = filepath.Join(t.TempDir(), "pin")
		os.WriteFile(b.pinFile, []byte(b.token.PIN+"\n"), 0o600)
		args = append(args, "--key-store", "pkcs11", "--pkcs11-module", b.token.Module, "--pkcs11-token", b.token.Label,
			"--pkcs11-pin-source", "file://"+b.pinFile)
	}
	run(t, e.ggprov, args...)
	run(t, e.ggprov, "subscription", "add", "--dir", b.dir, "--source", "sensor", "--subject", "sensors/sensor/#", "--target", "display")
	if b.tpm != nil {
		b.tpm.Stop() // its state goes to QEMU's swtpm
	}
	return b
}

// disk builds the data disk from the bundle (config edited by edit, if
// not nil).
func (b *bundle) disk(t testing.TB, edit func(cfg map[string]any)) string {
	t.Helper()
	if edit != nil {
		path := filepath.Join(b.dir, "config.json")
		data, _ := os.ReadFile(path)
		var cfg map[string]any
		if err := json.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		edit(cfg)
		data, _ = json.MarshalIndent(cfg, "", "  ")
		os.WriteFile(path, data, 0o644)
	}
	img := filepath.Join(t.TempDir(), "data.img")
	cmd := exec.Command(filepath.Join(e.root, "initramfs", "disk.sh"), b.dir, img)
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	if b.token != nil {
		tokens := strings.TrimSpace(readConfValue(t, b.token.Conf, "directories.tokendir"))
		cmd.Env = append(cmd.Env, "SOFTHSM_DIR="+tokens, "PIN_FILE="+b.pinFile)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("disk.sh: %v\n%s", err, out)
	}
	return img
}

func readConfValue(t testing.TB, path, key string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			return v
		}
	}
	t.Fatalf("%s: no %s", path, key)
	return ""
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

// console collects a VM's serial console, noting when each part came.
type console struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	marks []mark
}

// mark says that the console held end bytes at time at.
type mark struct {
	at  time.Time
	end int
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.buf.Write(p)
	c.marks = append(c.marks, mark{time.Now(), c.buf.Len()})
	return n, err
}

// seenAt returns when the console first showed want.
func (c *console) seenAt(want string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := strings.Index(c.buf.String(), want)
	if i < 0 {
		return time.Time{}, false
	}
	for _, m := range c.marks {
		if m.end >= i+len(want) {
			return m.at, true
		}
	}
	return time.Time{}, false
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// vm is a running QEMU (with its swtpm), started by initramfs/qemu.sh.
type vm struct {
	cmd     *exec.Cmd
	console *console
	exited  chan struct{}
	port    int
	started time.Time
}

// boot starts QEMU on the image with disk ("none" for no disk) and, if
// tpmState is not "", a swtpm with that state. env adds qemu.sh's
// settings (GGCORE_QEMU_APPEND=..., GGCORE_QEMU_ARGS=...).
func boot(t testing.TB, arch, initrd, kernel, disk, tpmState string, env ...string) *vm {
	t.Helper()
	v := &vm{console: &console{}, exited: make(chan struct{}), port: testtool.FreePort(t)}
	args := []string{arch, initrd, kernel, disk, strconv.Itoa(v.port)}
	if tpmState != "" {
		args = append(args, tpmState)
	}
	v.cmd = exec.Command(filepath.Join(e.root, "initramfs", "qemu.sh"), args...)
	if len(env) > 0 {
		v.cmd.Env = append(os.Environ(), env...)
	}
	v.cmd.Stdout, v.cmd.Stderr = v.console, v.console
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { v.cmd.Wait(); close(v.exited) }()
	t.Cleanup(v.stop)
	return v
}

// stop powers the VM off: QEMU and its swtpm are killed.
func (v *vm) stop() {
	syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
	<-v.exited
}

// waitFor waits until the console shows want, and returns how long after
// QEMU started it did.
func (v *vm) waitFor(t testing.TB, want string, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if at, ok := v.console.seenAt(want); ok {
			return at.Sub(v.started)
		}
		select {
		case <-v.exited:
			t.Fatalf("QEMU exited before the console said %q:\n%s", want, v.console)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console did not say %q within %v:\n%s", want, timeout, v.console)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mosq returns the TLS options of a device of bundle b against the VM.
func (b *bundle) mosq(v *vm, dev string) []string {
	return []string{"-h", "127.0.0.1", "-p", strconv.Itoa(v.port), "-V", "mqttv311",
		"--cafile", filepath.Join(b.dir, "certs", "group-ca.pem"),
		"--cert", filepath.Join(b.dir, "devices", dev+".cert.pem"), "--key", filepath.Join(b.dir, "devices", dev+".key.pem"), "-i", dev}
}

// assertRouting: display subscribes to sensors/#; other's publish (no
// route) does not arrive, sensor's (routed) does, in that order.
func assertRouting(t testing.TB, b *bundle, v *vm) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	lines := subscribe(ctx, t, b, v, "display", "-t", "sensors/#", "-v")
	pub := func(dev, topic, msg string) {
		out, err := exec.CommandContext(ctx, "mosquitto_pub", append(b.mosq(v, dev), "-t", topic, "-m", msg, "-q", "1")...).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub as %s: %v\n%s", dev, err, out)
		}
	}
	pub("other", "sensors/other/t", "unrouted")
	pub("sensor", "sensors/sensor/t", "routed")
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("mosquitto_sub ended before the routed message")
			}
			if strings.Contains(l, "unrouted") {
				t.Fatalf("display received an unrouted message: %s", l)
			}
			if l == "sensors/sensor/t routed" {
				return
			}
		case <-ctx.Done():
			t.Fatalf("the routed message did not arrive; console:\n%s", v.console)
		}
	}
}

// assertNoPlaintextKeys dumps the data disk and fails on any plaintext
// private key in it.
func assertNoPlaintextKeys(t testing.TB, disk string) {
	t.Helper()
	dump := t.TempDir()
	run(t, testtool.Require(t, "debugfs"), "-R", "rdump / "+dump, disk)
	found := 0
	filepath.WalkDir(dump, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(path)
		for rest := data; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if strings.HasSuffix(block.Type, "PRIVATE KEY") {
				found++
				if block.Type != "TSS2 PRIVATE KEY" {
					t.Errorf("%s on the data disk holds a plaintext %s", strings.TrimPrefix(path, dump), block.Type)
				}
			}
		}
		return nil
	})
	if found == 0 {
		t.Errorf("no key at all on the data disk; the dump is wrong")
	}
}

func sha256File(t testing.TB, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// firstConnection tries a device connection (mosquitto_pub as sensor)
// from now on, every 100 ms, and returns when the first one was accepted,
// counted from QEMU's start. Until the console says `ggcore ready` and
// gginit has said how the network came up (it does so beside ggcore's
// start) an attempt gets half a second: QEMU's user network holds a
// connection made before the guest listens on its address and retries
// it with backoff, which would otherwise count seconds the guest was
// already serving.
func (v *vm) firstConnection(t testing.TB, b *bundle) time.Duration {
	t.Helper()
	deadline := time.Now().Add(bootTimeout)
	for time.Now().Before(deadline) {
		limit := guestTimeout
		_, ready := v.console.seenAt("ggcore ready")
		_, addressed := v.console.seenAt("gginit: network:")
		if !ready || !addressed {
			limit = 500 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		err := exec.CommandContext(ctx, "mosquitto_pub", append(b.mosq(v, "sensor"), "-t", "sensors/sensor/boot", "-m", "up")...).Run()
		cancel()
		if err == nil {
			return time.Since(v.started)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no device connection accepted within %v:\n%s", bootTimeout, v.console)
	return 0
}

// guestCloud is ggcloud on the host's 127.0.0.1 (the guest's 10.0.2.2)
// with the fleet of b registered.
type guestCloud struct {
	bin, data string
	// groupID is the fleet's group.
	groupID string
}

// startGuestCloud builds and starts ggcloud for the fleet b and registers
// the fleet in it, as `make run` does.
func startGuestCloud(t *testing.T, b *bundle) *guestCloud {
	t.Helper()
	c := &guestCloud{bin: filepath.Join(t.TempDir(), "ggcloud"), data: filepath.Join(t.TempDir(), "ggcloud")}
	goBuild(t, c.bin, "./tools/ggcloud", "")
	run(t, e.ggprov, "ggcloud-cert", "--dir", b.dir, "--host", "10.0.2.2", "--host", "127.0.0.1")
	port := testtool.FreePort(t)
	cloud := testtool.StartProcess(t, exec.Command(c.bin, "--data", c.data, "serve",
		"--listen", "127.0.0.1:"+strconv.Itoa(port), "--mqtt-listen", "127.0.0.1:"+strconv.Itoa(testtool.FreePort(t)),
		"--cert", filepath.Join(b.dir, "ggcloud", "server.cert.pem"), "--key", filepath.Join(b.dir, "ggcloud", "server.key.pem")))
	if !cloud.WaitFor("ggcloud ready", 0) {
		t.Fatalf("ggcloud not ready: %v\n%s", cloud.Err(), cloud.Output)
	}
	t.Cleanup(func() { _ = cloud.Stop() })
	run(t, e.ggprov, "register", "--dir", b.dir, "--ggcloud-data", c.data, "--ggcloud", "10.0.2.2:"+strconv.Itoa(port))
	var group struct{ GroupId string }
	groupJSON, err := os.ReadFile(filepath.Join(b.dir, "write", "deployment", "group", "group.json"))
	if err != nil || json.Unmarshal(groupJSON, &group) != nil || group.GroupId == "" {
		t.Fatalf("the bundle's group.json: %v", err)
	}
	c.groupID = group.GroupId
	return c
}

// cli runs a ggcloud admin command and returns its output.
func (c *guestCloud) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(c.bin, append([]string{"--data", c.data}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ggcloud %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// subscribe runs mosquitto_sub as device in the guest's broker (QoS 1,
// debug output, args added) until ctx ends, waits for its SUBACK, and
// returns its output lines from then on.
func subscribe(ctx context.Context, t testing.TB, b *bundle, v *vm, device string, args ...string) <-chan string {
	t.Helper()
	sub := exec.CommandContext(ctx, "stdbuf", append([]string{"-oL", "mosquitto_sub"}, append(append(b.mosq(v, device), args...), "-q", "1", "-d")...)...)
	stdout, _ := sub.StdoutPipe()
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Process.Kill(); sub.Wait() })
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for subscribed := false; !subscribed; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("mosquitto_sub ended before its SUBACK")
			}
			subscribed = strings.Contains(l, "received SUBACK")
		case <-ctx.Done():
			t.Fatalf("no SUBACK from the core within %v", guestTimeout)
		}
	}
	return lines
}
