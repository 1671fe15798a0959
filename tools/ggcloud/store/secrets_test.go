package store

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/secrets"
)

func str(s string) *string { return &s }

func stagesOf(t *testing.T, s *Store, name string) map[string][]string {
	t.Helper()
	sec, err := s.Secret(name)
	must(t, err)
	out := map[string][]string{}
	for _, v := range sec.Versions {
		if v.String != nil || v.Binary != nil {
			t.Errorf("Secret returned the value of version %s", v.ID)
		}
		out[v.ID] = v.Stages
	}
	return out
}

func TestSecretVersionsAndLabels(t *testing.T) {
	s := open(t, t.TempDir())
	sec, err := s.CreateSecret("db-password", SecretValue{String: str("one")})
	must(t, err)
	if !strings.HasPrefix(sec.ARN, "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-password-") || len(sec.ARN) != len("arn:aws:secretsmanager:us-east-1:000000000000:secret:db-password-")+6 {
		t.Errorf("ARN %q", sec.ARN)
	}
	if config.SecretName(sec.ARN) != "db-password" || config.CheckSecretARN(sec.ARN) != nil {
		t.Errorf("ARN %q does not name the secret back", sec.ARN)
	}
	v1 := sec.Versions[0].ID
	if _, err := s.CreateSecret("db-password", SecretValue{String: str("x")}); !errors.Is(err, ErrExists) {
		t.Errorf("second create = %v; want ErrExists", err)
	}
	v2, err := s.PutSecretValue(sec.ARN, SecretValue{String: str("two")}, nil)
	must(t, err)
	if got := stagesOf(t, s, "db-password"); !slices.Equal(got[v1], []string{StagePrevious}) || !slices.Equal(got[v2.ID], []string{StageCurrent}) {
		t.Errorf("after put-value: %v; want v1 AWSPREVIOUS, v2 AWSCURRENT", got)
	}
	v3, err := s.PutSecretValue("db-password", SecretValue{Binary: []byte{0, 1, 2}}, []string{"Label1"})
	must(t, err)
	v4, err := s.PutSecretValue("db-password", SecretValue{String: str("four")}, []string{"AWSCURRENT", "Label1"})
	must(t, err)
	got := stagesOf(t, s, "db-password")
	want := map[string][]string{v1: {}, v2.ID: {StagePrevious}, v3.ID: {}, v4.ID: {StageCurrent, "Label1"}}
	for id, w := range want {
		if !slices.Equal(got[id], w) && !(len(got[id]) == 0 && len(w) == 0) {
			t.Errorf("version %s: stages %v, want %v (all: %v)", id, got[id], w, got)
		}
	}
	for name, v := range map[string]SecretValue{
		"both":     {String: str("a"), Binary: []byte("b")},
		"neither":  {},
		"too long": {String: str(strings.Repeat("x", maxSecretValue+1))},
	} {
		if _, err := s.PutSecretValue("db-password", v, nil); err == nil {
			t.Errorf("%s: value stored", name)
		}
	}
	if _, err := s.PutSecretValue("nope", SecretValue{String: str("a")}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown secret = %v", err)
	}
	list, err := s.Secrets()
	must(t, err)
	if len(list) != 1 || len(list[0].Versions) != 4 || list[0].Versions[0].String != nil {
		t.Errorf("Secrets = %+v", list)
	}
}

func TestSecretsFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	_, err := s.CreateSecret("k", SecretValue{String: str("v")})
	must(t, err)
	info, err := os.Stat(filepath.Join(dir, "ggcloud.db"))
	must(t, err)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("ggcloud.db mode %v; want 0600", info.Mode().Perm())
	}
}

func pubPEM(t *testing.T, k *rsa.PrivateKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestDeploySealsSecretsToTheCore(t *testing.T) {
	s := open(t, t.TempDir())
	ca := newGroupCA(t)
	fleet(t, s, "gw")
	must(t, s.CreateGroup(Group{ID: "g1", Core: "gw", CAs: []string{ca.cert}, CAKey: ca.key}))
	sec, err := s.CreateSecret("api-key", SecretValue{String: str("s3cr3t-current")})
	must(t, err)
	_, err = s.PutSecretValue("api-key", SecretValue{String: str("s3cr3t-next")}, []string{"Next"})
	must(t, err)
	r, err := s.AddSecretResource("g1", SecretResource{Id: "apikey", ARN: "api-key", AdditionalStagingLabelsToDownload: []string{"Next"}})
	must(t, err)
	if r.ARN != sec.ARN || r.Name != "apikey" {
		t.Errorf("resource stored as %+v", r)
	}
	if _, err := s.AddSecretResource("g1", r); err != nil {
		t.Errorf("adding the same resource again: %v", err)
	}
	if _, err := s.AddSecretResource("g1", SecretResource{Id: "again", ARN: sec.ARN}); !errors.Is(err, ErrExists) {
		t.Errorf("second resource for one secret = %v; want ErrExists", err)
	}
	if _, err := s.AddSecretResource("g1", SecretResource{Id: "x", ARN: "missing"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("resource for an unknown secret = %v; want ErrNotFound", err)
	}

	// Without the core's key, no deployment.
	if _, err := s.Deploy("g1"); err == nil || !strings.Contains(err.Error(), "no registered SecretsManager key") {
		t.Fatalf("deploy without the core's key = %v", err)
	}
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	if err := s.SetSecretsKey("gw", pubPEM(t, weak)); err == nil {
		t.Error("an RSA-1024 SecretsManager key was registered")
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	must(t, s.SetSecretsKey("gw", pubPEM(t, key)))
	id, err := s.Deploy("g1")
	must(t, err)
	d, err := s.Deployment("g1", id)
	must(t, err)
	g, err := config.ParseGroup(d.Document)
	must(t, err)
	res := g.SecretResources()
	if len(res) != 1 || res[0].Id != "apikey" || res[0].ARN != sec.ARN || !slices.Equal(res[0].Labels(), []string{"AWSCURRENT", "Next"}) {
		t.Fatalf("group.json resources = %+v", res)
	}
	env, err := s.SecretsEnvelope("g1", id)
	must(t, err)
	if bytes.Contains(env, []byte("s3cr3t")) || bytes.Contains(d.Document, []byte("s3cr3t")) {
		t.Fatal("a value is in clear in the deployment")
	}
	store := secrets.New(t.TempDir(), key, nil)
	st, err := store.Stage("g1", id, d.Document, env, res)
	if err != nil {
		t.Fatalf("the core cannot stage the deployment's secrets: %v", err)
	}
	st.Commit()
	for stage, want := range map[string]string{"AWSCURRENT": "s3cr3t-current", "Next": "s3cr3t-next"} {
		if got, err := store.Get("api-key", "", stage); err != nil || *got.SecretString != want {
			t.Errorf("%s: %+v, %v", stage, got, err)
		}
	}

	// A label the secret lacks refuses the deployment.
	must(t, s.RemoveResource("g1", "apikey"))
	_, err = s.AddSecretResource("g1", SecretResource{Id: "apikey", ARN: "api-key", AdditionalStagingLabelsToDownload: []string{"AWSPREVIOUS"}})
	must(t, err)
	if _, err := s.Deploy("g1"); err == nil || !strings.Contains(err.Error(), "no version labelled AWSPREVIOUS") {
		t.Errorf("deploy with a missing label = %v", err)
	}
	// A deployment without secret resources carries no envelope.
	must(t, s.RemoveResource("g1", "apikey"))
	id2, err := s.Deploy("g1")
	must(t, err)
	if _, err := s.SecretsEnvelope("g1", id2); !errors.Is(err, ErrNotFound) {
		t.Errorf("envelope of a deployment without secrets: %v", err)
	}
	// Registering the group again keeps its resources.
	_, err = s.AddSecretResource("g1", SecretResource{Id: "apikey", ARN: "api-key"})
	must(t, err)
	must(t, s.CreateGroup(Group{ID: "g1", Core: "gw", CAs: []string{ca.cert}, CAKey: ca.key}))
	if g, _ := s.Group("g1"); len(g.Resources) != 1 {
		t.Errorf("CreateGroup again dropped the resources: %+v", g.Resources)
	}
}
