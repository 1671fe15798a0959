// Package testtool finds the real programs that tests drive (openssl,
// mosquitto, swtpm, SoftHSM2, node), starts some of them (StartSWTPM,
// NewSoftHSMToken), and holds the waits every test uses (Timeout, Poll,
// Eventually, Buffer.WaitFor); the MQTT test client is in mqtttest. A
// test that needs a program skips when it is missing on a developer's
// machine, and fails under CI=true, where a missing peer is a broken
// install step, not a reason to skip.
package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// debianPackage names the package that provides each program.
var debianPackage = map[string]string{
	"mosquitto":     "mosquitto",
	"mosquitto_pub": "mosquitto-clients",
	"mosquitto_sub": "mosquitto-clients",
	"openssl":       "openssl",
	"stdbuf":        "coreutils",
	"swtpm":         "swtpm",
	"softhsm2-util": "softhsm2",
	"node":          "nodejs",
	"npm":           "npm",
	"pkcs11-tool":   "opensc",
}

// Require returns the path of program name, found in PATH or /usr/sbin.
func Require(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/sbin/" + name; isExecutable(p) {
		return p
	}
	pkg := debianPackage[name]
	if pkg == "" {
		pkg = name
	}
	Missing(t, name, pkg)
	return ""
}

// Missing ends the test for want of what, which Debian package pkg
// provides: it skips, or fails under CI=true.
func Missing(t testing.TB, what, pkg string) {
	t.Helper()
	Unavailable(t, fmt.Sprintf("%s not found; install it with `apt-get install %s` (make deps does)", what, pkg))
}

// Unavailable ends the test for want of something this machine lacks,
// which msg says: it skips, or fails under CI=true, where a missing peer
// is a broken install step, not a reason to skip.
func Unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true, so this test may not skip)")
	}
	t.Skip(msg)
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}
