package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/secrets"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/tools/ggcloud/admin"
)

// newSecretValue is a value unique to the test, to scan files and logs for.
func newSecretValue(t *testing.T, what string) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return what + "-" + hex.EncodeToString(b)
}

// assertNowhere fails if value appears in any file under dir or in any
// of the logs.
func assertNowhere(t *testing.T, value, dir string, logs map[string]string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(value)) {
			t.Errorf("the secret's value is in clear in %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, log := range logs {
		if strings.Contains(log, value) {
			t.Errorf("the secret's value is in the %s log", name)
		}
	}
}

// TestDeploymentCarriesSecrets: a secret created in ggcloud and added to
// the group reaches the core sealed to its SecretsManager key: the core
// stores it encrypted under its write directory, opens it at restart,
// and its value is in no file of the write directory and no log. A
// deployment whose secrets are sealed to another key fails as a whole:
// the running group.json and secrets stay.
func TestDeploymentCarriesSecrets(t *testing.T) {
	t.Parallel()
	f, c, group := deployFleet(t, "dev1", "dev2")
	current, next := newSecretValue(t, "current"), newSecretValue(t, "next")
	valueFile := writeTemp(t, "value", current)
	runOK(t, bin.ggcloud, "--data", c.data, "secret", "create", "db-password", "--from-file", valueFile)
	runOK(t, bin.ggcloud, "--data", c.data, "secret", "put-value", "db-password", "--from-file", writeTemp(t, "next", next), "--stages", "Next")
	list := runOK(t, bin.ggcloud, "--data", c.data, "secret", "list")
	if !strings.Contains(list, "AWSCURRENT") || !strings.Contains(list, "Next") || strings.Contains(list, current) {
		t.Errorf("secret list: want both labels and no value:\n%s", list)
	}
	runOK(t, bin.ggcloud, "--data", c.data, "group", "add-secret", group, "--resource-id", "db", "--secret", "db-password", "--labels", "Next")
	core := startCore(t, f)
	id := c.deploy(t, group)
	if s, out := c.waitStatus(t, group, id); s != "Success" {
		t.Fatalf("deployment %s: %s\ncore log:\n%s", id, out, core.log)
	}
	// The status reaches the cloud before the core's log line reaches the test.
	if !core.log.WaitFor("secrets deployed", 0, testtool.Timeout, core.exited) {
		t.Errorf("no 'secrets deployed' in the core log:\n%s", core.log)
	}
	g, err := config.LoadGroup(f.groupPath())
	if err != nil {
		t.Fatal(err)
	}
	if res := g.SecretResources(); len(res) != 1 || res[0].Id != "db" {
		t.Fatalf("group.json secret resources: %+v", res)
	}

	// The write directory holds the envelope, 0600, and the core's key
	// opens it (what ggcore does at start).
	dir := filepath.Join(f.dir, "write", "secrets")
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("%s: %v, %v; want one envelope", dir, entries, err)
	}
	if info, _ := entries[0].Info(); info.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v; want 0600", entries[0].Name(), info.Mode().Perm())
	}
	store := secrets.New(dir, secretsKeyOf(t, f), nil)
	data, _ := os.ReadFile(f.groupPath())
	if err := store.Load(group, data, g.SecretResources()); err != nil {
		t.Fatalf("the stored secrets do not open with the core's key: %v", err)
	}
	for stage, want := range map[string]string{"AWSCURRENT": current, "Next": next} {
		if got, err := store.Get("db-password", "", stage); err != nil || *got.SecretString != want {
			t.Errorf("stored %s: %v", stage, err)
		}
	}

	core.stop(t)
	core = startCore(t, f)
	if !strings.Contains(core.log.String(), "secrets loaded") {
		t.Errorf("the restarted core did not load its secrets:\n%s", core.log)
	}

	// Sealed to another key: the deployment fails, nothing changes.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	cloud, err := admin.Open(c.data)
	if err != nil {
		t.Fatal(err)
	}
	err = cloud.SetSecretsKey(context.Background(), "core", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	cloud.Close()
	if err != nil {
		t.Fatal(err)
	}
	runOK(t, bin.ggcloud, "--data", c.data, "group", "add-subscription", group,
		"--id", "s-after", "--source", "dev1", "--subject", "after/#", "--target", "dev2")
	groupBefore, _ := os.ReadFile(f.groupPath())
	bad := c.deploy(t, group)
	s, out := c.waitStatus(t, group, bad)
	if s != "Failure" || !strings.Contains(out, "do not decrypt") && !strings.Contains(out, "unwrap") {
		t.Fatalf("deployment sealed to another key: %s; want Failure naming the key", out)
	}
	if after, _ := os.ReadFile(f.groupPath()); !bytes.Equal(after, groupBefore) {
		t.Error("the refused deployment changed group.json")
	}
	if after, _ := os.ReadDir(dir); len(after) != 1 || after[0].Name() != entries[0].Name() {
		t.Errorf("the refused deployment changed the stored secrets: %v -> %v", entries, after)
	}
	dev2 := f.connect5(t, "dev2")
	if code := dev2.Subscribe(t, 1, "after/#")[0]; code < 0x80 {
		t.Errorf("SUBACK 0x%02x for the refused deployment's subscription; want a refusal", code)
	}
	assertNowhere(t, current, filepath.Join(f.dir, "write"), map[string]string{"core": core.log.String(), "ggcloud": c.log.String()})
	assertNowhere(t, next, filepath.Join(f.dir, "write"), map[string]string{"core": core.log.String(), "ggcloud": c.log.String()})
}

// secretsKeyOf opens the fleet's SecretsManager key as ggcore does.
func secretsKeyOf(t *testing.T, f *fleet) crypto.Decrypter {
	t.Helper()
	cfg, err := config.LoadConfig(f.configPath())
	if err != nil {
		t.Fatal(err)
	}
	ref := cfg.Crypto.Principals.SecretsManager.PrivateKey
	k, err := keys.Open(ref)
	if err != nil {
		t.Fatalf("SecretsManager key %s: %v", ref, err)
	}
	dec, ok := k.(crypto.Decrypter)
	if !ok {
		t.Fatalf("SecretsManager key %s cannot decrypt", ref)
	}
	return dec
}

// TestDeploymentSecretsInTPM: with the SecretsManager key in a TPM
// (swtpm), ggprov register records its public key from the bundle, and
// the core unwraps a deployment's secrets inside the TPM.
func TestDeploymentSecretsInTPM(t *testing.T) {
	t.Parallel()
	h := newHardware(t, "tpm")
	f := newFleetWith(t, h.initArgs, "dev1")
	c := withCloud(t, f, cloudOptions{})
	f.setConfig(t, "ggcore.deploymentPollSeconds", 1)
	group := readJSON(t, f.groupPath())["GroupId"].(string)
	value := newSecretValue(t, "tpm")
	runOK(t, bin.ggcloud, "--data", c.data, "secret", "create", "tpm-secret", "--from-file", writeTemp(t, "value", value))
	runOK(t, bin.ggcloud, "--data", c.data, "group", "add-secret", group, "--resource-id", "tpm", "--secret", "tpm-secret")
	core := startCore(t, f)
	id := c.deploy(t, group)
	if s, out := c.waitStatus(t, group, id); s != "Success" {
		t.Fatalf("deployment %s: %s\ncore log:\n%s", id, out, core.log)
	}
	// The status reaches the cloud before the core's log line reaches the test.
	if !core.log.WaitFor("secrets deployed", 0, testtool.Timeout, core.exited) {
		t.Errorf("no 'secrets deployed' in the core log:\n%s", core.log)
	}
	assertNowhere(t, value, filepath.Join(f.dir, "write"), map[string]string{"core": core.log.String(), "ggcloud": c.log.String()})
}
