package e2e

import (
	"strings"
	"testing"

	"github.com/ggcore/ggcore/internal/testtool"
)

// TestClockFallsBackToControlPlane: with its NTP server silent, the core
// measures the clock against ggcloud's HTTPS Date (mutual TLS, verified
// against the fleet's CA) and logs it; without ggcore.time.setClock it
// leaves this machine's clock alone.
func TestClockFallsBackToControlPlane(t *testing.T) {
	t.Parallel()
	ntp := testtool.StartNTP(t, 0)
	ntp.SetSilent(true)
	f := newFleet(t, "dev1")
	withCloud(t, f, cloudOptions{dcm: true})
	cfg := readJSON(t, f.configPath())
	cfg["ggcore"].(map[string]any)["time"] = map[string]any{"ntpServers": []any{ntp.Addr}}
	writeJSON(t, f.configPath(), cfg)
	core := startCore(t, f)
	if !core.log.WaitFor("clock synchronised", 0, testtool.Timeout, core.exited) {
		t.Fatalf("the core did not measure the clock; its log:\n%s", core.log)
	}
	if ntp.Requests() == 0 {
		t.Errorf("the core did not ask its NTP server first")
	}
	var line string
	for _, l := range strings.Split(core.log.String(), "\n") {
		if strings.Contains(l, "clock synchronised") {
			line = l
		}
	}
	for _, want := range []string{"source=control-plane", "server=127.0.0.1:", "stepped=false"} {
		if !strings.Contains(line, want) {
			t.Errorf("the sync line lacks %q: %s", want, line)
		}
	}
}
