package testtool

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// SWTPM is a software TPM 2.0 started for one test.
type SWTPM struct {
	// Device names the TPM in ggcore.tpm.device's syntax:
	// "unix:///…/tpm.sock" or "tcp://127.0.0.1:PORT".
	Device string
	// Dir holds the TPM's state (its NVRAM: persistent keys and the SRK).
	Dir string

	stop func()
}

// Stop stops swtpm (its state stays in Dir), for handing the state to
// another swtpm, such as QEMU's. It is safe to call more than once.
func (s *SWTPM) Stop() { s.stop() }

// StartSWTPM starts swtpm with fresh state in a temporary directory,
// powered on and started up, and stops it when the test ends. transport
// is "unix" (a Unix socket, the default for "") or "tcp" (127.0.0.1 on a
// free port). Under -short (make check) the test skips instead.
func StartSWTPM(t testing.TB, transport string) *SWTPM {
	t.Helper()
	if testing.Short() {
		t.Skip("needs swtpm; skipped under -short")
	}
	bin := Require(t, "swtpm")
	// Not t.TempDir: Unix socket paths are limited to about 100 bytes,
	// and swtpm's options are comma-separated, so a test name with a
	// comma in the path would break them.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "tpm.sock")
	args := []string{"socket", "--tpm2",
		"--tpmstate", "dir=" + dir,
		"--ctrl", "type=unixio,path=" + sock + ".ctrl",
		"--flags", "not-need-init,startup-clear",
		"--log", "file=" + filepath.Join(dir, "swtpm.log") + ",level=1",
	}
	var device, dialNet, dialAddr string
	switch transport {
	case "", "unix":
		args = append(args, "--server", "type=unixio,path="+sock)
		device, dialNet, dialAddr = "unix://"+sock, "unix", sock
	case "tcp":
		port := FreePort(t)
		args = append(args, "--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port))
		dialAddr = fmt.Sprintf("127.0.0.1:%d", port)
		device, dialNet = "tcp://"+dialAddr, "tcp"
	default:
		t.Fatalf("StartSWTPM: transport %q: want unix or tcp", transport)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Kill()
			<-exited
		})
	}
	t.Cleanup(stop)
	// Ready when the control socket and the data socket answer.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock + ".ctrl"); err == nil {
			if c, err := net.Dial("unix", sock+".ctrl"); err == nil {
				c.Close()
				// The data socket exists once bound, but refuses
				// connections until swtpm listens on it: dial it. The
				// probe connection closes at once, freeing it for the test.
				if c, err := net.Dial(dialNet, dialAddr); err == nil {
					c.Close()
					break
				}
			}
		}
		select {
		case <-exited:
			t.Fatalf("swtpm exited at start: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not come up within 10s: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &SWTPM{Device: device, Dir: dir, stop: stop}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
