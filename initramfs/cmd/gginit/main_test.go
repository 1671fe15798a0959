package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestSettings(t *testing.T) {
	args := parseCmdline("console=ttyS0 panic=-1 quiet ggcore.disk=/dev/vdb ggcore.gw=\n")
	tests := []struct{ key, def, want string }{
		{"ggcore.disk", defaultDisk, "/dev/vdb"},
		{"ggcore.gw", "10.0.2.2", "10.0.2.2"}, // empty: the default
		{"ggcore.ip", "", ""},
		{"console", "", "ttyS0"},
	}
	for _, tt := range tests {
		if got := setting(args, tt.key, tt.def); got != tt.want {
			t.Errorf("setting(%s) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestExitReason(t *testing.T) {
	tests := []struct {
		name, script, want string
	}{
		{"stopped", "exit 0", "exit status 0"},
		{"refused to start", "exit 1", "refused to start; its error is above"},
		{"crashed", "exit 2", "exit status 2"},
		{"killed", "kill -9 $$", "killed by signal killed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := exec.Command("sh", "-c", tt.script).Run()
			if got := exitReason(err); !strings.Contains(got, tt.want) {
				t.Errorf("exitReason = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

func TestGGCoreArgs(t *testing.T) {
	tests := []struct{ cmdline, want string }{
		{"console=ttyS0 quiet", "--config /greengrass/config/config.json"},
		{"quiet ggcore.loglevel=debug", "--config /greengrass/config/config.json --log-level debug"},
	}
	for _, tt := range tests {
		if got := strings.Join(ggcoreArgs(parseCmdline(tt.cmdline)), " "); got != tt.want {
			t.Errorf("ggcoreArgs(%q) = %q, want %q", tt.cmdline, got, tt.want)
		}
	}
}

// TestWaitReady: gginit brings the network up when ggcore says it is
// ready on the ready pipe, or closes it without a word (it exited), and at
// the latest after the bound; it says which.
func TestWaitReady(t *testing.T) {
	tests := []struct {
		name  string
		write string
		close bool
		max   time.Duration
		want  string
	}{
		{"ready", "ready\n", true, time.Minute, "ggcore is ready"},
		{"exited", "", true, time.Minute, "ggcore exited before it was ready"},
		{"never says", "", false, 50 * time.Millisecond, "ggcore has not said it is ready within 50ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if tt.write != "" {
				if _, err := w.WriteString(tt.write); err != nil {
					t.Fatal(err)
				}
			}
			if tt.close {
				w.Close()
			}
			got := make(chan string, 1)
			go func() { got <- waitReady(r, tt.max) }()
			select {
			case why := <-got:
				if why != tt.want {
					t.Errorf("waitReady = %q, want %q", why, tt.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("waitReady still waiting after 30s (bound %v)", tt.max)
			}
		})
	}
}
