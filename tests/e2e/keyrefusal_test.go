package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// refusal is one bad key setting: config.json's path set to value (nil
// leaves config.json alone), then ggcore must exit 1 with an error that
// names where and contains every want.
type refusal struct {
	name  string
	path  string
	value any
	where string // the JSON path the error must name ("" = path)
	want  []string
}

// assertRefusals runs ggcore (binary) once per case on f, restoring
// config.json and calling setup/undo around each case.
func assertRefusals(t *testing.T, f *fleet, binary string, cases []refusal, setup func(refusal) func()) {
	t.Helper()
	good, err := os.ReadFile(f.configPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if err := os.WriteFile(f.configPath(), good, 0o600); err != nil {
					t.Fatal(err)
				}
			}()
			if c.path != "" {
				f.setConfig(t, c.path, c.value)
			}
			if setup != nil {
				if undo := setup(c); undo != nil {
					defer undo()
				}
			}
			code, out := runBinaryToExit(t, binary, f)
			if code != 1 {
				t.Errorf("exit status %d; want 1:\n%s", code, out)
			}
			where := c.where
			if where == "" {
				where = c.path
			}
			for _, w := range append([]string{where}, c.want...) {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "ggcore ready") {
				t.Errorf("ggcore said it was ready:\n%s", out)
			}
		})
	}
}

// TestTPMKeyRefusals: a missing persistent key, an unreachable TPM and
// keys unfit for their principal stop ggcore with a message naming the
// principal and the reason.
func TestTPMKeyRefusals(t *testing.T) {
	t.Parallel()
	h := newHardware(t, "tpm")
	f := newFleetWith(t, append(h.initArgs, "--key-type", "ecp256", "--server-key-type", "rsa2048"), "sensor")
	cfg := readJSON(t, f.configPath())
	principals := cfg["crypto"].(map[string]any)["principals"].(map[string]any)
	ref := func(p string) string { return principals[p].(map[string]any)["privateKeyPath"].(string) }
	const (
		iot     = "crypto.principals.IoTCertificate.privateKeyPath"
		server  = "crypto.principals.MQTTServerCertificate.privateKeyPath"
		secrets = "crypto.principals.SecretsManager.privateKeyPath"
	)
	assertRefusals(t, f, bin.ggcore, []refusal{
		{name: "absent handle", path: iot, value: "tpm2:handle=0x81000099", want: []string{"0x81000099", "no key at this persistent handle"}},
		{name: "TPM unreachable", path: "ggcore.tpm.device", value: "unix:///nonexistent/tpm.sock",
			where: iot, want: []string{"unix:///nonexistent/tpm.sock", "TPM unreachable"}},
		{name: "EC key for SecretsManager", path: secrets, value: ref("IoTCertificate"), want: []string{"EC P-256", "SecretsManager requires RSA"}},
		{name: "signing key for SecretsManager", path: secrets, value: ref("MQTTServerCertificate"), want: []string{"may only sign"}},
		{name: "decryption key for the MQTT server", path: server, value: ref("SecretsManager"), want: []string{"may only decrypt"}},
	}, nil)
}

// TestTokenKeyRefusals: a wrong PIN, a missing token or object, and
// token keys of a type ggcore does not accept (RSA-1024, P-224, Ed25519) stop ggcore with a message
// naming the principal and the reason, and never the PIN.
func TestTokenKeyRefusals(t *testing.T) {
	h := newHardware(t, "pkcs11")
	f := newFleetWith(t, append(h.initArgs, "--key-type", "ecp256"), "sensor")
	tool := requireTool(t, "pkcs11-tool")
	for _, k := range []struct{ label, id, typ string }{
		{"weak-rsa", "a1", "rsa:1024"},
		{"p224", "a2", "EC:secp224r1"},
		{"ed25519", "a3", "EC:edwards25519"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, tool, "--module", h.token.Module, "--token-label", h.token.Label,
			"--login", "--pin", h.token.PIN, "--keypairgen", "--key-type", k.typ, "--label", k.label, "--id", k.id).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("pkcs11-tool --keypairgen %s: %v\n%s", k.typ, err, out)
		}
	}
	cfg := readJSON(t, f.configPath())
	iotRef := cfg["crypto"].(map[string]any)["principals"].(map[string]any)["IoTCertificate"].(map[string]any)["privateKeyPath"].(string)
	withObject := func(label string) string {
		return strings.Replace(iotRef, "object=core-iot", "object="+label, 1)
	}
	const iot = "crypto.principals.IoTCertificate.privateKeyPath"
	assertRefusals(t, f, bin.ggcore, []refusal{
		{name: "wrong PIN", where: iot, want: []string{"wrong PIN"}},
		{name: "missing token", path: iot, value: strings.Replace(iotRef, "token=ggcore-e2e", "token=no-such-token", 1),
			want: []string{"no-such-token", "no such token", "ggcore-e2e"}},
		{name: "missing object", path: iot, value: withObject("no-such-key"), want: []string{"no-such-key", "no such key object"}},
		{name: "RSA-1024", path: iot, value: withObject("weak-rsa"), want: []string{"RSA-1024", "at least 2048 bits"}},
		{name: "P-224", path: iot, value: withObject("p224"), want: []string{"P-224", "want P-256 or P-384"}},
		{name: "Ed25519", path: iot, value: withObject("ed25519"), want: []string{"Ed25519 key"}},
	}, func(c refusal) func() {
		if c.name != "wrong PIN" {
			return nil
		}
		if err := os.WriteFile(h.pinFile, []byte("999999\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return func() { os.WriteFile(h.pinFile, []byte(h.token.PIN+"\n"), 0o600) }
	})
	t.Run("PIN never printed", func(t *testing.T) {
		os.WriteFile(h.pinFile, []byte("999999\n"), 0o600)
		defer os.WriteFile(h.pinFile, []byte(h.token.PIN+"\n"), 0o600)
		_, out := runCoreToExit(t, f)
		if strings.Contains(out, "999999") || strings.Contains(out, h.token.PIN) {
			t.Errorf("ggcore printed a PIN:\n%s", out)
		}
	})

	// The TPM image is built without cgo: it refuses token keys, saying why.
	t.Run("static build", func(t *testing.T) {
		code, out := runBinaryToExit(t, bin.ggcoreStatic, f)
		if code != 1 || !strings.Contains(out, iot) || !strings.Contains(out, "CGO_ENABLED=1") {
			t.Errorf("static ggcore with token keys: exit %d; want 1 naming %s and CGO_ENABLED=1:\n%s", code, iot, out)
		}
	})
}
