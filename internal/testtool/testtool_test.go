package testtool

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestStartSWTPM(t *testing.T) {
	for _, transport := range []string{"unix", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			sw := StartSWTPM(t, transport)
			network, addr, _ := strings.Cut(sw.Device, "://")
			if network != transport {
				t.Fatalf("Device %q: want a %s:// device", sw.Device, transport)
			}
			c, err := net.Dial(network, addr)
			if err != nil {
				t.Fatalf("dial %s: %v", sw.Device, err)
			}
			c.Close()
		})
	}
}

func TestNewSoftHSMToken(t *testing.T) {
	tok := NewSoftHSMToken(t, "first", "1234")
	NewSoftHSMToken(t, "second", "5678")
	if got := os.Getenv("SOFTHSM2_CONF"); got != tok.Conf {
		t.Errorf("SOFTHSM2_CONF = %q, want %q", got, tok.Conf)
	}
	out, err := exec.Command(Require(t, "softhsm2-util"), "--show-slots").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --show-slots: %v\n%s", err, out)
	}
	for _, label := range []string{"first", "second"} {
		if !strings.Contains(string(out), "Label:            "+label) {
			t.Errorf("token %q not in the test's token directory:\n%s", label, out)
		}
	}
}

func TestProcess(t *testing.T) {
	sh := Require(t, "sh")
	// Exits 0 on SIGTERM, as ggcore and ggcloud do.
	p := StartProcess(t, exec.Command(sh, "-c", `trap 'echo stopping; exit 0' TERM; echo ready; while :; do sleep 0.05; done`))
	if !p.WaitFor("ready", 0) {
		t.Fatalf("no ready line: %q", p.Output)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v; want a clean exit", err)
	}
	select {
	case <-p.Exited():
	default:
		t.Error("Exited not closed after Stop")
	}
	if !strings.Contains(p.Output.String(), "stopping") {
		t.Errorf("output %q: the process did not get SIGTERM", p.Output)
	}

	crashed := StartProcess(t, exec.Command(sh, "-c", "echo bye; exit 3"))
	if crashed.WaitFor("never printed", 0) {
		t.Error("WaitFor found text the process never wrote")
	}
	if err := crashed.Err(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Err = %v; want exit status 3", err)
	}
}
