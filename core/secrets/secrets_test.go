package secrets

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

const (
	secretARN   = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-password-AbCdEf"
	secretValue = "correct horse battery staple"
	oldValue    = "hunter2-previous"
)

var groupJSON = []byte(`{"GroupId":"g1","GroupVersionId":"2"}` + "\n")

func resources() []config.SecretResource {
	return []config.SecretResource{{Id: "db", Name: "db", ARN: secretARN, AdditionalStagingLabelsToDownload: []string{"AWSPREVIOUS"}}}
}

func payload() Payload {
	cur, prev := secretValue, oldValue
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return Payload{Resources: []Resource{{ResourceId: "db", ARN: secretARN, Name: "db-password", Versions: []Version{
		{VersionId: "v2", VersionStages: []string{"AWSCURRENT"}, SecretString: &cur, CreatedDate: created},
		{VersionId: "v1", VersionStages: []string{"AWSPREVIOUS"}, SecretString: &prev, CreatedDate: created.Add(-time.Hour)},
	}}}}
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seal(t testing.TB, pub *rsa.PublicKey, deployment string, doc []byte, p Payload) []byte {
	t.Helper()
	env, err := Seal(pub, "g1", deployment, doc, p)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// logBuffer returns a logger writing to a buffer the test scans.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

func TestEnvelopeRoundTripAndRefusals(t *testing.T) {
	key, other := rsaKey(t), rsaKey(t)
	env := seal(t, &key.PublicKey, "d1", groupJSON, payload())
	if bytes.Contains(env, []byte(secretValue)) {
		t.Fatal("the envelope holds the value in clear")
	}
	e, err := ParseEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Open(key)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := *p.Resources[0].Versions[0].SecretString; got != secretValue {
		t.Errorf("value = %q", got)
	}
	tamper := func(f func(*Envelope)) *Envelope {
		var c Envelope
		if err := json.Unmarshal(env, &c); err != nil {
			t.Fatal(err)
		}
		f(&c)
		return &c
	}
	tests := []struct {
		name string
		e    *Envelope
		key  crypto.Decrypter
	}{
		{"another core's key", e, other},
		{"deployment ID changed", tamper(func(c *Envelope) { c.DeploymentId = "d2" }), key},
		{"group ID changed", tamper(func(c *Envelope) { c.GroupId = "g2" }), key},
		{"group.json hash changed", tamper(func(c *Envelope) { c.GroupSha256 = strings.Repeat("0", 64) }), key},
		{"ciphertext flipped", tamper(func(c *Envelope) { c.Ciphertext[0] ^= 1 }), key},
		{"no key", e, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.e.Open(tt.key); err == nil {
				t.Error("opened; want a refusal")
			}
		})
	}
}

func TestSealRefusesWeakKey(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Seal(&weak.PublicKey, "g1", "d1", groupJSON, payload()); err == nil {
		t.Error("sealed to an RSA-1024 key")
	}
}

func TestParseEnvelopeRefusals(t *testing.T) {
	good := seal(t, &rsaKey(t).PublicKey, "d1", groupJSON, payload())
	edit := func(field string, v any) []byte {
		var m map[string]any
		json.Unmarshal(good, &m)
		m[field] = v
		out, _ := json.Marshal(m)
		return out
	}
	for name, data := range map[string][]byte{
		"not JSON":       []byte("{"),
		"other format":   edit("Format", "v0"),
		"no deployment":  edit("DeploymentId", ""),
		"short hash":     edit("GroupSha256", "abc"),
		"short nonce":    edit("Nonce", []byte{1, 2}),
		"no wrapped key": edit("WrappedKey", nil),
		"too large":      bytes.Repeat([]byte(" "), MaxEnvelope+1),
	} {
		if _, err := ParseEnvelope(data); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestStageCommitLoad(t *testing.T) {
	key := rsaKey(t)
	dir := filepath.Join(t.TempDir(), "secrets")
	log, logs := logBuffer()
	s := New(dir, key, log)
	st, err := s.Stage("g1", "d1", groupJSON, seal(t, &key.PublicKey, "d1", groupJSON, payload()), resources())
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	if _, err := s.Get(secretARN, "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("before Commit: Get = %v; want ErrNotFound (nothing served changes until Commit)", err)
	}
	st.Commit()
	got, err := s.Get(secretARN, "", "")
	if err != nil || *got.SecretString != secretValue || got.VersionID != "v2" || got.ResourceID != "db" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if got, err := s.Get("db-password", "", "AWSPREVIOUS"); err != nil || *got.SecretString != oldValue {
		t.Errorf("Get by name, AWSPREVIOUS = %+v, %v", got, err)
	}
	if got, err := s.Get(secretARN, "v1", ""); err != nil || *got.SecretString != oldValue {
		t.Errorf("Get by version ID = %+v, %v", got, err)
	}
	for _, q := range [][3]string{{secretARN, "v1", "AWSCURRENT"}, {secretARN, "", "Label9"}, {"other", "", ""}} {
		if _, err := s.Get(q[0], q[1], q[2]); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get%q = %v; want ErrNotFound", q, err)
		}
	}
	// What rests on disk is the envelope, 0600, never the value.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d files in %s; want 1", len(entries), dir)
	}
	path := filepath.Join(dir, entries[0].Name())
	info, _ := os.Stat(path)
	data, _ := os.ReadFile(path)
	if info.Mode().Perm() != 0o600 || bytes.Contains(data, []byte(secretValue)) {
		t.Errorf("%s: mode %v, value in clear %v; want 0600 and sealed", path, info.Mode().Perm(), bytes.Contains(data, []byte(secretValue)))
	}
	// A restart loads the stored envelope of the running group.json.
	again := New(dir, key, log)
	if err := again.Load("g1", groupJSON, resources()); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, err := again.Get(secretARN, "", ""); err != nil || *got.SecretString != secretValue {
		t.Errorf("after Load: %+v, %v", got, err)
	}
	// An edited group.json has no secrets.
	if err := New(dir, key, log).Load("g1", []byte(`{"GroupId":"g1","GroupVersionId":"3"}`), resources()); err == nil {
		t.Error("Load of another group.json found secrets")
	}
	if strings.Contains(logs.String(), secretValue) || strings.Contains(logs.String(), oldValue) {
		t.Errorf("a log line holds a value:\n%s", logs)
	}
}

func TestStageRefusalsChangeNothing(t *testing.T) {
	key, other := rsaKey(t), rsaKey(t)
	dir := filepath.Join(t.TempDir(), "secrets")
	s := New(dir, key, nil)
	st, err := s.Stage("g1", "d1", groupJSON, seal(t, &key.PublicKey, "d1", groupJSON, payload()), resources())
	if err != nil {
		t.Fatal(err)
	}
	st.Commit()
	before, _ := os.ReadDir(dir)
	doc2 := []byte(`{"GroupId":"g1","GroupVersionId":"3"}`)
	onlyCurrent := payload()
	onlyCurrent.Resources[0].Versions = onlyCurrent.Resources[0].Versions[:1]
	wrongARN := payload()
	wrongARN.Resources[0].ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf"
	tests := []struct {
		name      string
		env       []byte
		resources []config.SecretResource
	}{
		{"sealed to another key", seal(t, &other.PublicKey, "d2", doc2, payload()), resources()},
		{"another deployment's", seal(t, &key.PublicKey, "d9", doc2, payload()), resources()},
		{"another group.json's", seal(t, &key.PublicKey, "d2", groupJSON, payload()), resources()},
		{"a label missing", seal(t, &key.PublicKey, "d2", doc2, onlyCurrent), resources()},
		{"another secret", seal(t, &key.PublicKey, "d2", doc2, wrongARN), resources()},
		{"no envelope", nil, resources()},
		{"secrets for a group without resources", seal(t, &key.PublicKey, "d2", doc2, payload()), nil},
		{"garbage", []byte("not an envelope"), resources()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Stage("g1", "d2", doc2, tt.env, tt.resources); err == nil {
				t.Fatal("staged; want a refusal")
			}
			after, _ := os.ReadDir(dir)
			if len(after) != len(before) || after[0].Name() != before[0].Name() {
				t.Errorf("files changed: %v -> %v", before, after)
			}
			if got, err := s.Get(secretARN, "", ""); err != nil || *got.SecretString != secretValue {
				t.Errorf("running secrets changed: %+v, %v", got, err)
			}
		})
	}
}

func TestAbortKeepsRunningSecrets(t *testing.T) {
	key := rsaKey(t)
	dir := filepath.Join(t.TempDir(), "secrets")
	s := New(dir, key, nil)
	st, _ := s.Stage("g1", "d1", groupJSON, seal(t, &key.PublicKey, "d1", groupJSON, payload()), resources())
	st.Commit()
	doc2 := []byte(`{"GroupId":"g1","GroupVersionId":"3"}`)
	st2, err := s.Stage("g1", "d2", doc2, seal(t, &key.PublicKey, "d2", doc2, payload()), resources())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := os.ReadDir(dir); len(n) != 2 {
		t.Errorf("staged: %d files; want the running and the staged envelope", len(n))
	}
	st2.Abort()
	if n, _ := os.ReadDir(dir); len(n) != 1 {
		t.Errorf("aborted: %d files; want the running envelope only", len(n))
	}
	if err := New(dir, key, nil).Load("g1", groupJSON, resources()); err != nil {
		t.Errorf("the running envelope is gone: %v", err)
	}
	// A group without secret resources commits to none.
	st3, err := s.Stage("g1", "d3", doc2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st3.Commit()
	if _, err := s.Get(secretARN, "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("after a deployment without secrets: %v; want ErrNotFound", err)
	}
	if n, _ := os.ReadDir(dir); len(n) != 0 {
		t.Errorf("%d envelopes left; want none", len(n))
	}
}

func TestReadChecksAccessAndLogsWithoutValue(t *testing.T) {
	key := rsaKey(t)
	log, logs := logBuffer()
	s := New(t.TempDir(), key, log)
	st, _ := s.Stage("g1", "d1", groupJSON, seal(t, &key.PublicKey, "d1", groupJSON, payload()), resources())
	st.Commit()
	if got, err := s.Read("fn-allowed", []string{"other", "db"}, "db-password", "", ""); err != nil || *got.SecretString != secretValue {
		t.Errorf("allowed read = %+v, %v", got, err)
	}
	if _, err := s.Read("fn-denied", []string{"other"}, secretARN, "", ""); !errors.Is(err, ErrDenied) {
		t.Errorf("read without a policy = %v; want ErrDenied", err)
	}
	if _, err := s.Read("fn-allowed", []string{"db"}, "nope", "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown secret = %v; want ErrNotFound", err)
	}
	out := logs.String()
	for _, want := range []string{"caller=fn-allowed", "caller=fn-denied", "secret read refused", `msg="secret read"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, secretValue) {
		t.Errorf("a log line holds the value:\n%s", out)
	}
}

// TestHardwareKeys unwraps with the SecretsManager key in a TPM (swtpm)
// and in a PKCS#11 token (SoftHSM2), through core/keys as ggcore opens it.
func TestHardwareKeys(t *testing.T) {
	t.Run("TPM", func(t *testing.T) {
		sw := testtool.StartSWTPM(t, "unix")
		st := keys.NewStore(keys.StoreOptions{TPMDevice: sw.Device})
		defer st.Close()
		k, err := st.Create("file://"+filepath.Join(t.TempDir(), "secrets.pem"), keyspec.RSA2048, keyspec.Decrypt)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, k)
	})
	t.Run("PKCS11", func(t *testing.T) {
		tok := testtool.NewSoftHSMToken(t, "secrets-test", "1234")
		st := keys.NewStore(keys.StoreOptions{PKCS11: &config.PKCS11{P11Provider: tok.Module, SlotLabel: tok.Label, SlotUserPin: "1234"}})
		defer st.Close()
		k, err := st.Create("pkcs11:object=secrets;type=private", keyspec.RSA2048, keyspec.Decrypt)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, k)
	})
}

func roundTrip(t *testing.T, k crypto.Signer) {
	t.Helper()
	dec, ok := k.(crypto.Decrypter)
	if !ok {
		t.Fatal("the SecretsManager key is not a crypto.Decrypter")
	}
	s := New(t.TempDir(), dec, nil)
	st, err := s.Stage("g1", "d1", groupJSON, seal(t, k.Public().(*rsa.PublicKey), "d1", groupJSON, payload()), resources())
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	st.Commit()
	if got, err := s.Get(secretARN, "", ""); err != nil || *got.SecretString != secretValue {
		t.Errorf("Get = %+v, %v", got, err)
	}
}

func FuzzParseEnvelope(f *testing.F) {
	key := rsaKey(f)
	f.Add(seal(f, &key.PublicKey, "d1", groupJSON, payload()))
	f.Add([]byte(`{"Format":"ggcore-secrets/1"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEnvelope(data)
		if err != nil {
			return
		}
		// Whatever parses must fail to open cleanly or open whole.
		if p, err := e.Open(key); err == nil && p.Resources == nil && !bytes.Contains(data, []byte("Ciphertext")) {
			t.Errorf("opened an envelope without ciphertext")
		}
	})
}
