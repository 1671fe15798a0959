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
