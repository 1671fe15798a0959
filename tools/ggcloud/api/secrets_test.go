package api

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// TestDeploymentSecrets: the deployment's core, and only it, fetches the
// secrets sealed to its key; a deployment without secrets answers 404.
func TestDeploymentSecrets(t *testing.T) {
	f := newFixture(t)
	plain, _ := f.deploy(t)
	value := "api-secret-value"
	if _, err := f.st.CreateSecret("api", store.SecretValue{String: &value}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AddSecretResource("group-1", store.SecretResource{Id: "api", ARN: "api"}); err != nil {
		t.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err := f.st.SetSecretsKey("gw", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); err != nil {
		t.Fatal(err)
	}
	sealed, err := f.st.Deploy("group-1")
	if err != nil {
		t.Fatal(err)
	}
	path := func(id string) string { return f.url + "/greengrass/groups/group-1/deployments/" + id + "/secrets" }
	code, body := call(t, f.core, "GET", path(sealed), "")
	if code != 200 || !strings.Contains(body, `"Format":"ggcore-secrets/1"`) || strings.Contains(body, value) {
		t.Errorf("core: %d %s; want the sealed envelope", code, body)
	}
	for name, tt := range map[string]struct {
		code int
		want string
	}{
		"device of the group":   {403, "not authorized"},
		"core of another group": {403, "not authorized"},
	} {
		c := f.device
		if name == "core of another group" {
			c = f.core2
		}
		if code, body := call(t, c, "GET", path(sealed), ""); code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %s; want %d", name, code, body, tt.code)
		}
	}
	if code, body := call(t, f.core, "GET", path(plain), ""); code != 404 || !strings.Contains(body, "carries no secrets") {
		t.Errorf("deployment without secrets: %d %s; want 404", code, body)
	}
}
