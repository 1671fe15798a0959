package qemu

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// guestFunctionARN is the static Go function deployed into the guest.
const guestFunctionARN = "arn:aws:lambda:us-east-1:123456789012:function:guest-reader:1"

// TestTPMImageFunctionReadsSecret: the tpm image, with every key of the
// core in swtpm (the SecretsManager key included), gets a real deployment
// from ggcloud on the host (the guest reaches it at 10.0.2.2): a secret
// sealed to the core's SecretsManager key in the TPM, and a static Go
// function (tests/gofn, on core/ipc/ggfunc) as function code; no change
// to the image (the data partition is mounted noexec: the core runs the
// code from a copy in /run, and the function as nobody, not root). A device's message on the host reaches the function in
// the guest through a route; the function reads the secret with
// GetSecretValue and publishes its value and SHA-256, which reach
// another device on the host through a route.
func TestTPMImageFunctionReadsSecret(t *testing.T) {
	const arch = "amd64"
	initrd, kernel := image(t, "tpm", arch)
	b := provision(t, "tpm")
	gofn := filepath.Join(t.TempDir(), "code", "gofn")
	goBuild(t, gofn, "./tests/gofn", arch)
	c := startGuestCloud(t, b)
	cli := func(args ...string) string { t.Helper(); return c.cli(t, args...) }
	group := struct{ GroupId string }{c.groupID}

	value := make([]byte, 12)
	rand.Read(value)
	secret := "guest-" + hex.EncodeToString(value)
	valueFile := filepath.Join(t.TempDir(), "value")
	os.WriteFile(valueFile, []byte(secret), 0o600)
	cli("secret", "create", "db-password", "--from-file", valueFile)
	cli("group", "add-secret", group.GroupId, "--resource-id", "db", "--secret", "db-password")
	cli("function", "put-code", "--arn", guestFunctionARN, "--file", tgz(t, filepath.Dir(gofn)))
	conf, _ := json.Marshal(map[string]any{"Executable": "gofn", "Pinned": true, "Timeout": 30, "MemorySize": 16384,
		"EncodingType": "binary", "Environment": map[string]any{
			"Variables":              map[string]string{"ROLE": "secret", "FUNCTION": "guest", "SECRET_ID": "db-password", "REPLY_TOPIC": "fn/secret/guest"},
			"ResourceAccessPolicies": []any{map[string]string{"ResourceId": "db", "Permission": "ro"}},
		}})
	confFile := filepath.Join(t.TempDir(), "fn.json")
	os.WriteFile(confFile, conf, 0o600)
	cli("function", "add", group.GroupId, "--arn", guestFunctionARN, "--config", confFile)
	cli("group", "add-subscription", group.GroupId, "--id", "get", "--source", "sensor", "--subject", "secret/get/#", "--target", guestFunctionARN)
	cli("group", "add-subscription", group.GroupId, "--id", "put", "--source", guestFunctionARN, "--subject", "fn/secret/#", "--target", "display")

	disk := b.disk(t, func(cfg map[string]any) {
		cfg["ggcore"].(map[string]any)["deploymentPollSeconds"] = 1
	})

	v := boot(t, arch, initrd, kernel, disk, b.tpm.Dir)
	v.waitFor(t, "ggcore ready", bootTimeout)
	if !strings.Contains(v.console.String(), "principal=SecretsManager store=tpm") {
		t.Errorf("the console does not show the SecretsManager key opened in the TPM:\n%s", v.console)
	}
	start := time.Now()
	id := strings.Fields(cli("group", "deploy", group.GroupId))
	deployment := id[len(id)-1]
	var status string
	if !testtool.Poll(guestTimeout, func() bool {
		status = cli("deployment", "status", group.GroupId, deployment)
		return strings.Contains(status, "Success") || strings.Contains(status, "Failure")
	}) || !strings.Contains(status, "Success") {
		t.Fatalf("deployment %s: %s\nconsole:\n%s", deployment, status, v.console)
	}
	t.Logf("deployment of a secret and a static Go function's code into the guest (TCG): %v", time.Since(start).Round(time.Millisecond))
	v.waitFor(t, "secrets deployed", guestTimeout)

	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	lines := subscribe(ctx, t, b, v, "display", "-t", "fn/secret/#")
	start = time.Now()
	if out, err := exec.CommandContext(ctx, "mosquitto_pub", append(b.mosq(v, "sensor"), "-t", "secret/get/1", "-m", "{}", "-q", "1")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub as sensor: %v\n%s", err, out)
	}
	sum := sha256.Sum256([]byte(secret))
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("mosquitto_sub ended before the function's message")
			}
			if !strings.HasPrefix(l, "{") {
				continue
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(l), &got); err != nil || got["value"] != secret || got["sha256"] != hex.EncodeToString(sum[:]) {
				t.Fatalf("display got %s; want the secret's value and SHA-256\nconsole:\n%s", l, v.console)
			}
			t.Logf("device (host) → static Go function (guest) → GetSecretValue → device (host): %v", time.Since(start).Round(time.Millisecond))
			if strings.Contains(v.console.String(), secret) {
				t.Error("the secret's value is on the guest's console")
			}
			return
		case <-ctx.Done():
			t.Fatalf("the function's message did not arrive; console:\n%s", v.console)
		}
	}
}

// goBuild builds pkg (a path in the repository) statically for goarch
// ("" for this machine).
func goBuild(t *testing.T, out, pkg, goarch string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if goarch != "" {
		cmd.Env = append(cmd.Env, "GOOS=linux", "GOARCH="+goarch)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// tgz packs the files of dir (flat) as function code.
func tgz(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "code.tgz")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-C", dir, "-czf", out}
	for _, e := range entries {
		args = append(args, e.Name())
	}
	if b, err := exec.Command("tar", args...).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, b)
	}
	return out
}
