package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/tools/ggcloud/policy"
)

const discover = `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"greengrass:Discover","Resource":"arn:aws:iot:us-east-1:1:thing/${iot:Connection.Thing.ThingName}"}}`

// certOf is a stand-in certificate ID for name.
func certOf(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// groupCA is a group CA certificate and its key, as PEM.
type groupCA struct{ cert, key string }

func newGroupCA(t *testing.T) groupCA {
	t.Helper()
	ca, err := pki.NewCA("group CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.MarshalPEM(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return groupCA{string(pki.EncodeCertificate(ca.Cert)), string(key)}
}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fleet registers things, each with one certificate certOf(name).
func fleet(t *testing.T, s *Store, names ...string) {
	t.Helper()
	for _, n := range names {
		must(t, s.CreateThing(Thing{Name: n}))
		must(t, s.RegisterCertificate(Certificate{ID: certOf(n), Thing: n, PEM: "pem"}))
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ca := newGroupCA(t)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fleet(t, s, "gw", "sensor")
	must(t, s.PutPolicy("discover", []byte(discover)))
	must(t, s.AttachPolicy("discover", certOf("sensor")))
	must(t, s.AttachPolicy("discover", certOf("sensor"))) // twice is once
	must(t, s.SetConnectivity("gw", []Endpoint{{Id: "lan", HostAddress: "192.168.1.20", PortNumber: 8883}}))
	must(t, s.CreateGroup(Group{ID: "g1", Core: "gw", CAs: []string{ca.cert}, CAKey: ca.key}))
	must(t, s.AddDevice("g1", "sensor", ""))
	_, err = s.AddSubscription("g1", Subscription{Id: "s1", Source: "sensor", Subject: "sensors/#", Target: "cloud"})
	must(t, err)
	id, err := s.Deploy("g1")
	must(t, err)
	_, err = s.SetCoreStatus("g1", id, "gw", StatusSuccess, "")
	must(t, err)
	must(t, s.Close())

	s = open(t, dir)
	c, err := s.CallerOf(certOf("sensor"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Thing.Name != "sensor" || len(c.Policies) != 1 {
		t.Fatalf("caller %+v; want sensor with one policy", c)
	}
	req := policy.Request{Action: "greengrass:Discover", Resource: "arn:aws:iot:us-east-1:1:thing/sensor", ThingName: c.Thing.Name}
	if d := policy.Decide(c.Policies, req); !d.Allowed {
		t.Errorf("the attached policy does not allow the device's discovery: %s", d.Reason)
	}
	eps, err := s.Connectivity("gw")
	if err != nil || len(eps) != 1 || eps[0].HostAddress != "192.168.1.20" {
		t.Errorf("connectivity after restart = %+v, %v", eps, err)
	}
	groups, err := s.GroupsOf("sensor")
	if err != nil || len(groups) != 1 || groups[0].ID != "g1" || len(groups[0].Subscriptions) != 1 ||
		groups[0].DeviceCerts["sensor"] != certOf("sensor") || groups[0].CoreCert != certOf("gw") {
		t.Errorf("groups of sensor after restart = %+v, %v", groups, err)
	}
	d, err := s.CurrentDeploymentOfCore("gw")
	if err != nil || d.DeploymentId != id || d.GroupVersionId != "1" || !strings.Contains(string(d.Document), `"GroupId": "g1"`) {
		t.Errorf("current deployment after restart = %+v (%s), %v; want %s version 1", d, d.Document, err, id)
	}
	st, err := s.DeploymentStatus("g1", id)
	if err != nil || len(st) != 1 || st[0].Status != StatusSuccess {
		t.Errorf("status after restart = %+v, %v; want Success", st, err)
	}
	if ident, fixed, err := s.Identity(); err != nil || !fixed || ident != (Identity{DefaultRegion, DefaultAccount}) {
		t.Errorf("identity after restart = %+v fixed=%v, %v; want the default, fixed by the deployment", ident, fixed, err)
	}
	// The next deployment continues the version numbers.
	id2, err := s.Deploy("g1")
	must(t, err)
	if d, err := s.Deployment("g1", id2); err != nil || d.GroupVersionId != "2" || id2 == id {
		t.Errorf("second deployment = %+v, %v; want version 2 with a new ID", d, err)
	}
}

func TestRefusalsChangeNothing(t *testing.T) {
	s := open(t, t.TempDir())
	ca, other := newGroupCA(t), newGroupCA(t)
	fleet(t, s, "gw", "sensor", "gw2")
	must(t, s.CreateThing(Thing{Name: "bare"})) // no certificate
	must(t, s.RegisterCertificate(Certificate{ID: certOf("gw-second"), Thing: "gw2"}))
	must(t, s.CreateGroup(Group{ID: "g1", Core: "gw", CAs: []string{ca.cert}, CAKey: ca.key}))
	good := Group{ID: "g2", Core: "gw2", CoreCert: certOf("gw2"), CAs: []string{ca.cert}, CAKey: ca.key}
	sub := func(id, src, subject, dst string) Group {
		g := good
		g.Devices = []string{"sensor"}
		g.Subscriptions = []Subscription{{Id: id, Source: src, Subject: subject, Target: dst}}
		return g
	}
	sensorARN := Identity{DefaultRegion, DefaultAccount}.ThingARN("sensor")
	tests := []struct {
		name string
		err  error
		want string
		is   error
	}{
		{"duplicate thing", s.CreateThing(Thing{Name: "gw"}), "thing gw", ErrExists},
		{"bad thing name", s.CreateThing(Thing{Name: "a/b"}), `"a/b"`, nil},
		{"certificate of an unknown thing", s.RegisterCertificate(Certificate{ID: certOf("x"), Thing: "nobody"}), "thing nobody", ErrNotFound},
		{"certificate of another thing", s.RegisterCertificate(Certificate{ID: certOf("gw"), Thing: "sensor"}), "registered for thing gw, not sensor", ErrExists},
		{"bad certificate ID", s.RegisterCertificate(Certificate{ID: "xyz", Thing: "gw"}), `"xyz"`, nil},
		{"bad policy", s.PutPolicy("p", []byte(`{"Version":"2012-10-17"}`)), "Statement: missing", nil},
		{"attach a missing policy", s.AttachPolicy("nope", certOf("gw")), "policy nope", ErrNotFound},
		{"bad endpoint", s.SetConnectivity("gw", []Endpoint{{HostAddress: "x", PortNumber: 0}}), "ConnectivityInfo[0]", nil},
		{"connectivity of an unknown thing", s.SetConnectivity("nobody", nil), "thing nobody", ErrNotFound},
		{"group with an unknown device", s.PutGroup(Group{ID: "g2", Core: "gw2", Devices: []string{"nobody"}, CAs: []string{ca.cert}}), "thing nobody", ErrNotFound},
		{"group without a CA", s.PutGroup(Group{ID: "g2", Core: "gw2"}), "at least one CA", nil},
		{"CA that is not PEM", s.PutGroup(Group{ID: "g2", Core: "gw2", CAs: []string{"pem"}}), "CAs[0]", nil},
		{"CA key of another CA", s.PutGroup(Group{ID: "g2", Core: "gw2", CAs: []string{ca.cert}, CAKey: other.key}), "not the key of the CA certificate", nil},
		{"group ID with a slash", s.PutGroup(Group{ID: "a/b", Core: "gw2", CAs: []string{ca.cert}}), `"a/b"`, nil},
		{"expiry over 30 days", s.PutGroup(Group{ID: "g2", Core: "gw2", CAs: []string{ca.cert}, CertificateExpiryMs: 31 * 86400000}), "CertificateExpiryMs", nil},
		{"core of two groups", s.PutGroup(Group{ID: "g2", Core: "gw", CAs: []string{ca.cert}}), "already the core of group g1", nil},
		{"core as its own device", s.PutGroup(Group{ID: "g2", Core: "gw2", Devices: []string{"gw2"}, CAs: []string{ca.cert}}), "cannot also be a device", nil},
		{"device listed twice", s.PutGroup(Group{ID: "g2", Core: "gw2", Devices: []string{"sensor", "sensor"}, CAs: []string{ca.cert}}), "listed twice", nil},
		{"core certificate of another thing", s.PutGroup(Group{ID: "g2", Core: "gw2", CoreCert: certOf("gw"), CAs: []string{ca.cert}}), "belongs to thing gw, not gw2", nil},
		{"create without a CA key", s.CreateGroup(Group{ID: "g2", Core: "gw2", CAs: []string{ca.cert}}), "private key", nil},
		{"create: core with two certificates", s.CreateGroup(Group{ID: "g2", Core: "gw2", CAs: []string{ca.cert}, CAKey: ca.key}), "has 2 certificates", nil},
		{"create: core with none", s.CreateGroup(Group{ID: "g2", Core: "bare", CAs: []string{ca.cert}, CAKey: ca.key}), "no registered certificate", nil},
		{"create: taken ID", s.CreateGroup(Group{ID: "g1", Core: "gw", CAs: []string{other.cert}, CAKey: other.key}), "group g1 exists", ErrExists},
		{"subscription with a bad filter", s.PutGroup(sub("s1", sensorARN, "a/#/b", "cloud")), "not an MQTT topic filter", nil},
		{"subscription from a stranger", s.PutGroup(sub("s1", "arn:aws:iot:us-east-1:000000000000:thing/gw", "a", "cloud")), "Source", nil},
		{"subscription to itself", s.PutGroup(sub("s1", "cloud", "a", "cloud")), "both", nil},
		{"subscription with a bad Id", s.PutGroup(sub("s 1", "cloud", "a", sensorARN)), "Id", nil},
		{"device not registered", s.AddDevice("g1", "nobody", ""), "thing nobody", ErrNotFound},
		{"device without a certificate", s.AddDevice("g1", "bare", ""), "no registered certificate", nil},
		{"device of an unknown group", s.AddDevice("nope", "sensor", ""), "group nope", ErrNotFound},
		{"core added as a device", s.AddDevice("g1", "gw", ""), "cannot also be a device", nil},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) || tt.is != nil && !errors.Is(tt.err, tt.is) {
			t.Errorf("%s: %v; want an error naming %q", tt.name, tt.err, tt.want)
		}
	}
	if _, err := s.Certificate(certOf("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused registration left a certificate: %v", err)
	}
	if c, err := s.Certificate(certOf("gw")); err != nil || c.Thing != "gw" {
		t.Errorf("a refused registration changed certificate %+v, %v", c, err)
	}
	if _, err := s.CallerOf(certOf("x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unregistered certificate is a caller: %v", err)
	}
	for _, thing := range []string{"gw2", "sensor", "bare"} {
		if groups, err := s.GroupsOf(thing); err != nil || len(groups) != 0 {
			t.Errorf("groups of %s after refused changes = %+v, %v; want none", thing, groups, err)
		}
	}
	if g, err := s.Group("g1"); err != nil || len(g.Devices) != 0 || g.CAs[0] != ca.cert {
		t.Errorf("group g1 after refused changes = %+v, %v", g, err)
	}
	if eps, err := s.Connectivity("gw"); err != nil || len(eps) != 0 {
		t.Errorf("connectivity after a refused update = %+v, %v; want none", eps, err)
	}
}

func TestIdempotentChanges(t *testing.T) {
	s := open(t, t.TempDir())
	ca := newGroupCA(t)
	fleet(t, s, "gw", "sensor")
	must(t, s.PutPolicy("p", []byte(discover)))
	must(t, s.AttachPolicy("p", certOf("sensor")))
	g := Group{ID: "g1", Core: "gw", CAs: []string{ca.cert}, CAKey: ca.key}
	must(t, s.CreateGroup(g))
	must(t, s.AddDevice("g1", "sensor", ""))
	sub := Subscription{Id: "s1", Source: "sensor", Subject: "a/#", Target: "cloud"}
	_, err := s.AddSubscription("g1", sub)
	must(t, err)

	// Each again changes nothing.
	must(t, s.RegisterCertificate(Certificate{ID: certOf("sensor"), Thing: "sensor"}))
	must(t, s.CreateGroup(g))
	must(t, s.AddDevice("g1", "sensor", certOf("sensor")))
	stored, err := s.AddSubscription("g1", sub)
	must(t, err)
	if want := (Identity{DefaultRegion, DefaultAccount}).ThingARN("sensor"); stored.Source != want {
		t.Errorf("subscription source %q; want the thing name turned into %s", stored.Source, want)
	}
	if c, _ := s.Certificate(certOf("sensor")); len(c.Policies) != 1 {
		t.Errorf("registering again dropped the policies: %+v", c)
	}
	got, err := s.Group("g1")
	must(t, err)
	if len(got.Devices) != 1 || len(got.Subscriptions) != 1 {
		t.Errorf("group after repeated changes = %+v; want one device, one subscription", got)
	}
	if _, err := s.AddSubscription("g1", Subscription{Id: "s1", Source: "cloud", Subject: "b", Target: "sensor"}); !errors.Is(err, ErrExists) {
		t.Errorf("another subscription under Id s1 = %v; want ErrExists", err)
	}
}

func TestDeployRendersGroupJSON(t *testing.T) {
	s := open(t, t.TempDir())
	ca := newGroupCA(t)
	if _, err := s.UseIdentity(Identity{Region: "eu-west-1", Account: "123456789012"}); err != nil {
		t.Fatal(err)
	}
	fleet(t, s, "gw", "dev1", "dev2")
	must(t, s.RegisterCertificate(Certificate{ID: certOf("dev2-new"), Thing: "dev2"}))
	must(t, s.CreateGroup(Group{ID: "g1", Core: "gw", CAs: []string{ca.cert}, CAKey: ca.key, CertificateExpiryMs: 10 * 86400000}))
	must(t, s.AddDevice("g1", "dev1", ""))
	must(t, s.AddDevice("g1", "dev2", certOf("dev2-new")))
	for _, sub := range []Subscription{
		{Id: "s1", Source: "dev1", Subject: "sensors/dev1/#", Target: "cloud"},
		{Id: "s2", Source: "cloud", Subject: "commands/dev2", Target: "dev2"},
		{Id: "s3", Source: "dev1", Subject: "$aws/things/dev1/shadow/update", Target: "GGShadowService"},
	} {
		if _, err := s.AddSubscription("g1", sub); err != nil {
			t.Fatal(err)
		}
	}
	id, err := s.Deploy("g1")
	must(t, err)
	if len(id) != 36 || strings.Count(id, "-") != 4 {
		t.Errorf("deployment ID %q is not UUID-like", id)
	}
	d, err := s.Deployment("g1", id)
	must(t, err)
	arn := func(kind, name string) string { return "arn:aws:iot:eu-west-1:123456789012:" + kind + "/" + name }
	want := `{
  "GroupId": "g1",
  "GroupVersionId": "1",
  "CertificateExpiryInMilliseconds": 864000000,
  "Cores": [
    {
      "Id": "gw",
      "ThingArn": "` + arn("thing", "gw") + `",
      "CertificateArn": "` + arn("cert", certOf("gw")) + `",
      "SyncShadow": true
    }
  ],
  "Devices": [
    {
      "Id": "dev1",
      "ThingArn": "` + arn("thing", "dev1") + `",
      "CertificateArn": "` + arn("cert", certOf("dev1")) + `",
      "SyncShadow": false
    },
    {
      "Id": "dev2",
      "ThingArn": "` + arn("thing", "dev2") + `",
      "CertificateArn": "` + arn("cert", certOf("dev2-new")) + `",
      "SyncShadow": false
    }
  ],
  "Subscriptions": [
    {
      "Id": "s1",
      "Source": "` + arn("thing", "dev1") + `",
      "Subject": "sensors/dev1/#",
      "Target": "cloud"
    },
    {
      "Id": "s2",
      "Source": "cloud",
      "Subject": "commands/dev2",
      "Target": "` + arn("thing", "dev2") + `"
    },
    {
      "Id": "s3",
      "Source": "` + arn("thing", "dev1") + `",
      "Subject": "$aws/things/dev1/shadow/update",
      "Target": "GGShadowService"
    }
  ],
  "Functions": [],
  "Resources": []
}
`
	if string(d.Document) != want {
		t.Errorf("group.json:\n%s\nwant:\n%s", d.Document, want)
	}
	if d.GroupId != "g1" || d.DeploymentId != id || d.Core != "gw" || time.Since(d.CreatedAt) > time.Minute {
		t.Errorf("deployment %+v", d)
	}
	st, err := s.DeploymentStatus("g1", id)
	if err != nil || len(st) != 1 || st[0].Core != "gw" || st[0].Status != StatusInProgress {
		t.Errorf("status of a new deployment = %+v, %v; want gw InProgress", st, err)
	}

	id2, err := s.Deploy("g1")
	must(t, err)
	list, err := s.Deployments("g1")
	if err != nil || len(list) != 2 || list[0].DeploymentId != id || list[1].DeploymentId != id2 || list[1].GroupVersionId != "2" {
		t.Errorf("deployments = %+v, %v; want %s then %s (version 2)", list, err, id, id2)
	}
	if cur, err := s.CurrentDeployment("g1"); err != nil || cur.DeploymentId != id2 {
		t.Errorf("current deployment = %+v, %v; want %s", cur, err, id2)
	}
	// The older deployment is kept as it was.
	if old, _ := s.Deployment("g1", id); string(old.Document) != want {
		t.Errorf("deploying again changed the first deployment")
	}
}

func TestDeployRefusesInvalidGroups(t *testing.T) {
	s := open(t, t.TempDir())
	ca := newGroupCA(t)
	fleet(t, s, "gw", "dev1")
	// PutGroup names no certificates; a short expiry is allowed for
	// rotation tests but is not a valid group.json.
	must(t, s.PutGroup(Group{ID: "short", Core: "gw", CAs: []string{ca.cert}, CertificateExpiryMs: 60000}))
	must(t, s.CreateThing(Thing{Name: "gw2"}))
	must(t, s.PutGroup(Group{ID: "nocert", Core: "gw2", Devices: []string{"dev1"}, CAs: []string{ca.cert}}))

	tests := []struct{ group, want string }{
		{"short", "CertificateExpiryInMilliseconds: 60000 ms is not between 7 days"},
		{"nocert", "thing gw2 has no registered certificate"},
		{"nope", "group nope"},
	}
	for _, tt := range tests {
		_, err := s.Deploy(tt.group)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Deploy(%s) = %v; want an error naming %q", tt.group, err, tt.want)
		}
		if _, err := s.CurrentDeployment(tt.group); !errors.Is(err, ErrNotFound) {
			t.Errorf("a refused deployment of %s became current: %v", tt.group, err)
		}
	}
	// Fixed, the group deploys as version 1: refusals used no version.
	must(t, s.RegisterCertificate(Certificate{ID: certOf("gw2"), Thing: "gw2"}))
	id, err := s.Deploy("nocert")
	must(t, err)
	if d, _ := s.Deployment("nocert", id); d.GroupVersionId != "1" || !strings.Contains(string(d.Document), certOf("dev1")) {
		t.Errorf("deployment after the fix = %+v %s; want version 1 with dev1's only certificate", d, d.Document)
	}
}

func TestCoreStatus(t *testing.T) {
	s := open(t, t.TempDir())
	ca := newGroupCA(t)
	fleet(t, s, "gw", "gw2")
	must(t, s.CreateGroup(Group{ID: "g1", Core: "gw", CAs: []string{ca.cert}, CAKey: ca.key}))
	id, err := s.Deploy("g1")
	must(t, err)
	tests := []struct {
		name                    string
		group, deployment, core string
		status, message         string
		want                    string
	}{
		{"unknown status", "g1", id, "gw", "Done", "", "want one of InProgress, Success, Failure"},
		{"another core", "g1", id, "gw2", StatusSuccess, "", "gw2 is not its core (gw)"},
		{"unknown deployment", "g1", "nope", "gw", StatusSuccess, "", "deployment nope"},
		{"unknown group", "g9", id, "gw", StatusSuccess, "", "group g9"},
		{"message too long", "g1", id, "gw", StatusFailure, strings.Repeat("x", 5000), "ErrorMessage"},
	}
	for _, tt := range tests {
		if _, err := s.SetCoreStatus(tt.group, tt.deployment, tt.core, tt.status, tt.message); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want an error naming %q", tt.name, err, tt.want)
		}
	}
	if st, _ := s.DeploymentStatus("g1", id); len(st) != 1 || st[0].Status != StatusInProgress {
		t.Errorf("status after refused reports = %+v; want InProgress", st)
	}
	got, err := s.SetCoreStatus("g1", id, "gw", StatusFailure, "group.json: bad")
	must(t, err)
	st, err := s.DeploymentStatus("g1", id)
	if err != nil || len(st) != 1 || st[0] != got || got.Status != StatusFailure || got.ErrorMessage != "group.json: bad" {
		t.Errorf("status = %+v, %v; want %+v", st, err, got)
	}
}

func TestOpenMakesTheDirectoryPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	open(t, dir)
	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {filepath.Join(dir, "ggcloud.db"), 0o600}} {
		if info, err := os.Stat(p.path); err != nil || info.Mode().Perm() != p.mode {
			t.Errorf("%s: %v, %v; want mode %04o", p.path, info.Mode(), err, p.mode)
		}
	}
}

func TestIdentity(t *testing.T) {
	s := open(t, t.TempDir())
	if id, fixed, err := s.Identity(); err != nil || fixed || id.Region != DefaultRegion {
		t.Fatalf("identity of a new store = %+v fixed=%v, %v", id, fixed, err)
	}
	tests := []struct {
		name string
		in   Identity
		want Identity
		err  string
	}{
		{"bad region", Identity{Region: "US East"}, Identity{}, `region "US East"`},
		{"bad account", Identity{Account: "12"}, Identity{}, `account "12"`},
		{"first use fixes", Identity{Region: "eu-west-1"}, Identity{"eu-west-1", DefaultAccount}, ""},
		{"empty means as fixed", Identity{}, Identity{"eu-west-1", DefaultAccount}, ""},
		{"same again", Identity{"eu-west-1", DefaultAccount}, Identity{"eu-west-1", DefaultAccount}, ""},
		{"another region", Identity{Region: "us-east-1"}, Identity{}, "renders ARNs for region eu-west-1"},
		{"another account", Identity{Account: "123456789012"}, Identity{}, "refusing region eu-west-1, account 123456789012"},
	}
	for _, tt := range tests {
		got, err := s.UseIdentity(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %+v, %v; want an error naming %q", tt.name, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

// TestOpenBuildsMissingIndexes opens a file as an older ggcloud wrote it,
// without index buckets, and finds groups and certificates through them.
func TestOpenBuildsMissingIndexes(t *testing.T) {
	dir := t.TempDir()
	ca := newGroupCA(t)
	s, err := Open(dir)
	must(t, err)
	fleet(t, s, "gw", "sensor")
	must(t, s.PutGroup(Group{ID: "g1", Core: "gw", Devices: []string{"sensor"}, CAs: []string{ca.cert}}))
	path := s.Path()
	must(t, s.Close())

	db, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bThingCerts, bMembers} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Delete([]byte("schema"))
	}))
	must(t, db.Close())

	s = open(t, dir)
	if groups, err := s.GroupsOf("sensor"); err != nil || len(groups) != 1 {
		t.Errorf("groups of sensor = %+v, %v; want g1", groups, err)
	}
	if g, err := s.GroupOfCore("gw"); err != nil || g.ID != "g1" {
		t.Errorf("group of core gw = %+v, %v", g, err)
	}
	if certs, err := s.CertificatesOf("gw"); err != nil || len(certs) != 1 || certs[0] != certOf("gw") {
		t.Errorf("certificates of gw = %v, %v", certs, err)
	}
}

func TestSecondOpenWaitsThenFails(t *testing.T) {
	if testing.Short() {
		return
	}
	t.Parallel() // it waits 5 s
	dir := t.TempDir()
	open(t, dir)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "in use by another ggcloud") {
		t.Errorf("second Open = %v; want an in-use error", err)
	}
}

// A damaged store file is refused with a message naming it, not mapped.
func TestOpenRefusesDamagedFile(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, "ggcloud.db")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, info.Size()/2+100); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Open of a truncated store: %v, want a refusal naming %s as damaged", err, path)
	}
}
