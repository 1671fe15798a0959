package admin

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// TestSecrets: values go in through the admin API and never come back
// out; resources show in the group; a core's SecretsManager key is
// checked.
func TestSecrets(t *testing.T) {
	ctx := context.Background()
	c, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := newPEMs(t)
	certPEM, _ := p.cert(t, "gw")
	if _, err := c.CreateThing(ctx, "gw"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterCertificate(ctx, "gw", certPEM); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateGroup(ctx, NewGroup{Id: "g1", Core: "gw", CACertificatePem: p.groupCA, CAKeyPem: p.key}); err != nil {
		t.Fatal(err)
	}
	value, next := "first-value", "second-value"
	sec, err := c.CreateSecret(ctx, NewSecret{Name: "token", SecretString: &value})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSecret(ctx, NewSecret{Name: "token", SecretString: &value}); !errors.Is(err, store.ErrExists) {
		t.Errorf("second create = %v; want ErrExists", err)
	}
	v, err := c.PutSecretValue(ctx, SecretValue{SecretId: sec.ARN, SecretString: &next})
	if err != nil || strings.Join(v.Stages, ",") != "AWSCURRENT" {
		t.Fatalf("PutSecretValue = %+v, %v", v, err)
	}
	list, err := c.ListSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := json.Marshal(list)
	if strings.Contains(string(answer), value) || strings.Contains(string(answer), next) || !strings.Contains(string(answer), "AWSPREVIOUS") {
		t.Errorf("ListSecrets: %s; want the labels, never a value", answer)
	}
	if _, err := c.AddSecretResource(ctx, "g1", store.SecretResource{Id: "tok", ARN: "token"}); err != nil {
		t.Fatal(err)
	}
	g, err := c.GetGroup(ctx, "g1")
	if err != nil || len(g.Resources) != 1 || g.Resources[0].ARN != sec.ARN {
		t.Errorf("group resources = %+v, %v", g.Resources, err)
	}
	if err := c.SetSecretsKey(ctx, "gw", []byte("not a key")); err == nil {
		t.Error("a malformed SecretsManager key was taken")
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err := c.SetSecretsKey(ctx, "gw", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(ctx, "g1"); err != nil {
		t.Errorf("deploy with a secret: %v", err)
	}
	if err := c.RemoveResource(ctx, "g1", "tok"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveResource(ctx, "g1", "tok"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing it again = %v; want ErrNotFound", err)
	}
}
