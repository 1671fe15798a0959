package testtool

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SoftHSMModule is where Debian's softhsm2 package puts the PKCS#11
// module.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// Token is a SoftHSM2 token initialised for one test.
type Token struct {
	Module string // the PKCS#11 module's path
	Label  string // the token label
	PIN    string // the user PIN
	SOPIN  string // the security officer's PIN
	Conf   string // the SOFTHSM2_CONF file the test process now uses
}

// NewSoftHSMToken initialises a SoftHSM2 token labelled label in a
// temporary token directory and points SOFTHSM2_CONF at it for the rest
// of the test (t.Setenv: child processes inherit it; the test cannot be
// parallel). SoftHSM reads SOFTHSM2_CONF at C_Initialize, so a module
// must be initialised after this call and finalised before the test ends.
// Call it again in the same test for a second token in the same
// directory. Under -short (make check) the test skips instead.
func NewSoftHSMToken(t testing.TB, label, pin string) *Token {
	t.Helper()
	if testing.Short() {
		t.Skip("needs SoftHSM2; skipped under -short")
	}
	util := Require(t, "softhsm2-util")
	if _, err := os.Stat(SoftHSMModule); err != nil {
		Missing(t, SoftHSMModule, "softhsm2")
	}
	conf := os.Getenv("SOFTHSM2_CONF")
	if conf == "" || !isTestConf(conf) {
		dir := t.TempDir()
		tokens := filepath.Join(dir, "tokens")
		if err := os.Mkdir(tokens, 0o700); err != nil {
			t.Fatal(err)
		}
		conf = filepath.Join(dir, testConfName)
		body := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("SOFTHSM2_CONF", conf)
	}
	tok := &Token{Module: SoftHSMModule, Label: label, PIN: pin, SOPIN: "so-" + pin, Conf: conf}
	out, err := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", tok.SOPIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token %s: %v\n%s", label, err, out)
	}
	return tok
}

// testConfName marks a SOFTHSM2_CONF that NewSoftHSMToken wrote.
const testConfName = "softhsm2-test.conf"

func isTestConf(path string) bool { return filepath.Base(path) == testConfName }
