package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Case 12: a bad config.json stops ggcore with exit status 1 and an error
// naming the JSON path.
func TestBadConfigRefused(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1")
	good, err := os.ReadFile(f.configPath())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path  string
		value any
	}{
		{"coreThing.ggMqttPort", 70000},
		{"coreThing.ggMqttPort", "8883"},
		{"ggcore.tlsProfile", "lenient"},
		{"crypto.caPath", "file:///nonexistent/root.ca.pem"},
		{"crypto.principals.MQTTServerCertificate.privateKeyPath", "file:///nonexistent/key.pem"},
		{"ggcore.tlsProfil", "compat"}, // unknown field (typo)
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			if err := os.WriteFile(f.configPath(), good, 0o600); err != nil {
				t.Fatal(err)
			}
			f.setConfig(t, c.path, c.value)
			code, out := runCoreToExit(t, f)
			if code != 1 {
				t.Errorf("%s = %v: exit status %d; want 1:\n%s", c.path, c.value, code, out)
			}
			if !strings.Contains(out, c.path) {
				t.Errorf("%s = %v: output does not name %s:\n%s", c.path, c.value, c.path, out)
			}
			if strings.Contains(out, "ggcore ready") {
				t.Errorf("%s = %v: ggcore said it was ready:\n%s", c.path, c.value, out)
			}
		})
	}
}

// A command-line mistake is a usage error: exit status 2.
func TestUsageError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin.ggcore, "--no-such-flag").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("ggcore --no-such-flag: %v; want exit status 2:\n%s", err, out)
	}
	if !strings.Contains(string(out), "usage") {
		t.Errorf("ggcore --no-such-flag does not print its usage:\n%s", out)
	}
}
