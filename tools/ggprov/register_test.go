package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/tools/ggcloud/admin"
	"github.com/ggcore/ggcore/tools/ggcloud/api"
	"github.com/ggcore/ggcore/tools/ggcloud/policy"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// The bundle's ARNs by default (ggprov init without --region, --account).
const (
	testRegion  = "us-east-1"
	testAccount = "000000000000"
)

// bundleInfo is what a test needs of a bundle: its config and group.
type bundleInfo struct {
	dir string
	cfg *config.Config
	g   *config.Group
}

func loadBundle(t *testing.T, dir string) bundleInfo {
	t.Helper()
	cfg, err := config.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := config.LoadGroup(cfg.GroupPath())
	if err != nil {
		t.Fatal(err)
	}
	return bundleInfo{dir: dir, cfg: cfg, g: g}
}

// initWithSubscriptions makes a bundle (core, dev1, dev2) with two
// subscriptions, as a user would before registering it.
func initWithSubscriptions(t *testing.T, extra ...string) string {
	t.Helper()
	dir := mustInit(t, extra...)
	for _, args := range [][]string{
		{"--source", "dev1", "--subject", "sensors/#", "--target", "dev2"},
		{"--source", "dev2", "--subject", "lamp/state", "--target", "cloud"},
	} {
		if code, _, stderr := ggprov(append([]string{"subscription", "add", "--dir", dir}, args...)...); code != 0 {
			t.Fatalf("subscription add %v: exit %d: %s", args, code, stderr)
		}
	}
	return dir
}

func mustRegister(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := ggprov(append([]string{"register"}, args...)...)
	if code != 0 {
		t.Fatalf("ggprov register %v: exit %d: %s%s", args, code, stdout, stderr)
	}
	return stdout
}

// openCloud opens the admin client of a data directory and closes it at
// the end of the test (tests close it earlier to open the store).
func openCloud(t *testing.T, data string) *admin.Client {
	t.Helper()
	c, err := admin.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// cloudState is everything register writes into ggcloud, as the admin
// API shows it, plus the stored policies and their attachments.
type cloudState struct {
	Identity    admin.Identity
	Things      []admin.Thing
	Groups      []admin.Group
	Deployments map[string][]admin.Deployment
	Policies    map[string]string   // name -> document
	Attached    map[string][]string // certificate ID -> policy names
}

// readCloud reads the state of a data directory no ggcloud serves.
func readCloud(t *testing.T, data string, policyNames ...string) cloudState {
	t.Helper()
	ctx := context.Background()
	c, err := admin.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	s := cloudState{Deployments: map[string][]admin.Deployment{}, Policies: map[string]string{}, Attached: map[string][]string{}}
	func() {
		defer c.Close()
		if s.Identity, err = c.Identity(ctx); err != nil {
			t.Fatal(err)
		}
		list, err := c.ListThings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, th := range list {
			full, err := c.GetThing(ctx, th.Name)
			if err != nil {
				t.Fatal(err)
			}
			s.Things = append(s.Things, full)
		}
		if s.Groups, err = c.ListGroups(ctx); err != nil {
			t.Fatal(err)
		}
		for _, g := range s.Groups {
			if s.Deployments[g.Id], err = c.ListDeployments(ctx, g.Id); err != nil {
				t.Fatal(err)
			}
		}
	}()
	st, err := store.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, name := range policyNames {
		doc, err := st.Policy(name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		s.Policies[name] = string(doc)
	}
	for _, th := range s.Things {
		for _, id := range th.Certificates {
			c, err := st.Certificate(id)
			if err != nil {
				t.Fatal(err)
			}
			s.Attached[id] = c.Policies
		}
	}
	return s
}

func certID(t *testing.T, path string) string {
	t.Helper()
	return pki.CertificateID(readCert(t, path).Raw)
}

// TestRegister registers a bundle with --deploy and --ggcloud and checks
// ggcloud holds the core, the devices, the group and a deployment, and
// that config.json points at ggcloud.
func TestRegister(t *testing.T) {
	dir := initWithSubscriptions(t)
	b := loadBundle(t, dir)
	data := filepath.Join(t.TempDir(), "data")
	stdout := mustRegister(t, "--dir", dir, "--ggcloud-data", data, "--deploy", "--ggcloud", "127.0.0.1:9443")
	for _, want := range []string{"registered core core", "core-policy", b.g.GroupId, "deployed group", "ggHttpPort 9443"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}

	coreID := certID(t, filepath.Join(dir, "certs/core.cert.pem"))
	s := readCloud(t, data, "core-policy", b.g.GroupId+"-devices")

	if s.Identity != (admin.Identity{Region: testRegion, Account: testAccount, Fixed: true}) {
		t.Errorf("identity %+v, want the bundle's %s/%s, fixed", s.Identity, testRegion, testAccount)
	}
	wantThings := map[string]string{"core": coreID}
	for _, d := range b.g.Devices {
		wantThings[d.Name()] = d.CertificateID()
		if id := certID(t, filepath.Join(dir, "devices", d.Name()+".cert.pem")); id != d.CertificateID() {
			t.Fatalf("bundle: %s certificate ID %s, group.json %s", d.Name(), id, d.CertificateID())
		}
	}
	if len(s.Things) != len(wantThings) {
		t.Errorf("things %+v, want %d", s.Things, len(wantThings))
	}
	for _, th := range s.Things {
		id, ok := wantThings[th.Name]
		if !ok || !slices.Equal(th.Certificates, []string{id}) {
			t.Errorf("thing %s has certificates %v, want [%s]", th.Name, th.Certificates, id)
		}
		if want := "arn:aws:iot:us-east-1:000000000000:thing/" + th.Name; th.Arn != want {
			t.Errorf("thing %s ARN %s, want %s", th.Name, th.Arn, want)
		}
	}

	if len(s.Groups) != 1 {
		t.Fatalf("groups %+v, want the bundle's one", s.Groups)
	}
	g := s.Groups[0]
	if g.Id != b.g.GroupId || g.Core != (admin.Member{Thing: "core", CertificateId: coreID}) {
		t.Errorf("group %s core %+v; want %s with core %s", g.Id, g.Core, b.g.GroupId, coreID)
	}
	devices := map[string]string{}
	for _, m := range g.Devices {
		devices[m.Thing] = m.CertificateId
	}
	delete(wantThings, "core")
	if !reflect.DeepEqual(devices, wantThings) {
		t.Errorf("group devices %v, want %v", devices, wantThings)
	}
	var wantSubs []store.Subscription
	for _, sub := range b.g.Subscriptions {
		wantSubs = append(wantSubs, store.Subscription{Id: sub.Id, Source: sub.Source, Subject: sub.Subject, Target: sub.Target})
	}
	if len(wantSubs) != 2 || !reflect.DeepEqual(g.Subscriptions, wantSubs) {
		t.Errorf("group subscriptions %+v, want group.json's %+v", g.Subscriptions, wantSubs)
	}
	groupCA, err := os.ReadFile(filepath.Join(dir, "certs/group-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.CAs) != 1 || g.CAs[0] != string(groupCA) {
		t.Errorf("group CAs %q, want certs/group-ca.pem", g.CAs)
	}
	if g.CertificateExpiryMs != b.g.CertificateExpiryInMilliseconds {
		t.Errorf("group CertificateExpiryMs %d, want group.json's %d", g.CertificateExpiryMs, b.g.CertificateExpiryInMilliseconds)
	}
	deps := s.Deployments[g.Id]
	if len(deps) != 1 || !deps[0].Current || deps[0].DeploymentId == "" || deps[0].DeploymentId != g.CurrentDeploymentId ||
		!strings.Contains(stdout, deps[0].DeploymentId) {
		t.Errorf("deployments %+v, current %q; want one current deployment, named in the summary", deps, g.CurrentDeploymentId)
	}
	if !slices.Equal(s.Attached[coreID], []string{"core-policy"}) {
		t.Errorf("core certificate policies %v, want [core-policy]", s.Attached[coreID])
	}
	for name, id := range wantThings {
		if !slices.Equal(s.Attached[id], []string{b.g.GroupId + "-devices"}) {
			t.Errorf("%s certificate policies %v, want [%s-devices]", name, s.Attached[id], b.g.GroupId)
		}
	}

	// config.json now points at ggcloud, still loads, and is otherwise
	// as init wrote it.
	var raw rawConfig
	readJSON(t, filepath.Join(dir, "config.json"), &raw)
	if raw.CoreThing.GGHost != "127.0.0.1" || raw.CoreThing.GGHttpPort != 9443 {
		t.Errorf("config.json coreThing.ggHost %q ggHttpPort %d, want 127.0.0.1 9443", raw.CoreThing.GGHost, raw.CoreThing.GGHttpPort)
	}
	after, err := config.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatalf("config.json after register: %v", err)
	}
	before := *b.cfg
	before.CoreThing.GGHost, before.CoreThing.GGHttpPort = "127.0.0.1", 9443
	if !reflect.DeepEqual(*after, before) {
		t.Errorf("config.json changed beyond ggHost and ggHttpPort:\n%+v\nwant\n%+v", *after, before)
	}
	if info, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Error(err)
	} else if info.Mode().Perm() != 0o644 {
		t.Errorf("config.json after register: mode %o, want 644", info.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json.new")); err == nil {
		t.Error("config.json.new left behind")
	}
}

// TestRegisterPolicies: the core's policy is Greengrass v1's Minimal AWS IoT
// Policy filled in, and it and the devices' policy allow what the core
// and devices call, and nothing of other things or groups.
func TestRegisterPolicies(t *testing.T) {
	dir := mustInit(t)
	b := loadBundle(t, dir)
	data := filepath.Join(t.TempDir(), "data")
	mustRegister(t, "--dir", dir, "--ggcloud-data", data)
	group := b.g.GroupId
	devicesPolicy := group + "-devices"
	s := readCloud(t, data, "core-policy", devicesPolicy)
	docs := map[string]*policy.Document{}
	for _, name := range []string{"core-policy", devicesPolicy} {
		text, ok := s.Policies[name]
		if !ok {
			t.Fatalf("policy %s not stored", name)
		}
		d, err := policy.Parse(name, []byte(text))
		if err != nil {
			t.Fatalf("policy %s: %v", name, err)
		}
		docs[name] = d
	}

	// v1's minimal core policy, verbatim in ggcloud's testdata, with its
	// placeholders filled in.
	seed, err := os.ReadFile("../ggcloud/api/testdata/minimal-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	filled := strings.NewReplacer("region", testRegion, "account-id", testAccount, "core-name", "core", "group-id", group).Replace(string(seed))
	want, err := policy.Parse("core-policy", []byte(filled))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(docs["core-policy"], want) {
		t.Errorf("core-policy is not v1's minimal core policy:\n%+v\nwant\n%+v", docs["core-policy"].Statements, want.Statements)
	}

	const (
		arn  = "arn:aws:iot:us-east-1:000000000000:"
		gg   = "arn:aws:greengrass:us-east-1:000000000000:/greengrass/groups/"
		core = "arn%3Aaws%3Aiot%3Aus-east-1%3A000000000000%3Athing%2Fcore"
	)
	dep := gg + group + "/deployments/x"
	tests := []struct {
		policy, caller, action, resource string
		allowed                          bool
	}{
		{"core-policy", "core", "greengrass:CreateCertificate", "*", true},
		{"core-policy", "core", "greengrass:CreateCertificate", arn + "thing/core", true},
		{"core-policy", "core", "greengrass:UpdateConnectivityInfo", arn + "thing/core", true},
		{"core-policy", "core", "greengrass:GetConnectivityInfo", arn + "thing/core", true},
		{"core-policy", "core", "greengrass:UpdateConnectivityInfo", arn + "thing/dev1", false},
		{"core-policy", "core", "greengrass:GetDeployment", dep, true},
		{"core-policy", "core", "greengrass:GetDeploymentArtifacts", dep, true},
		{"core-policy", "core", "greengrass:UpdateCoreDeploymentStatus", dep + "/cores/" + core, true},
		{"core-policy", "core", "greengrass:UpdateCoreDeploymentStatus", dep + "/cores/" + strings.Replace(core, "thing%2Fcore", "thing%2Fdev1", 1), false},
		{"core-policy", "core", "greengrass:GetDeployment", gg + "00000000-0000-4000-8000-000000000000/deployments/x", false},
		{"core-policy", "core", "greengrass:GetDeployment", strings.Replace(dep, "us-east-1", "eu-west-1", 1), false},
		{"core-policy", "core", "greengrass:Discover", arn + "thing/core", false},
		{"core-policy", "core", "greengrass:Discover", arn + "thing/dev1", false},
		{devicesPolicy, "dev1", "greengrass:Discover", arn + "thing/dev1", true},
		{devicesPolicy, "dev2", "greengrass:Discover", arn + "thing/dev2", true},
		{devicesPolicy, "dev1", "greengrass:Discover", arn + "thing/dev2", false},
		{devicesPolicy, "dev1", "greengrass:Discover", arn + "thing/core", false},
		{devicesPolicy, "", "greengrass:Discover", arn + "thing/dev1", false},
		{devicesPolicy, "dev1", "greengrass:CreateCertificate", "*", false},
		{devicesPolicy, "dev1", "greengrass:GetConnectivityInfo", arn + "thing/dev1", false},
	}
	for _, tt := range tests {
		d := policy.Decide([]*policy.Document{docs[tt.policy]}, policy.Request{Action: tt.action, Resource: tt.resource, ThingName: tt.caller})
		if d.Allowed != tt.allowed {
			t.Errorf("%s, caller %q: %s on %s: allowed %v, want %v (%s)", tt.policy, tt.caller, tt.action, tt.resource, d.Allowed, tt.allowed, d.Reason)
		}
	}
}

// TestRegisterAgainIsHarmless: a second register changes nothing; after
// a new subscription, register adds just that.
func TestRegisterAgainIsHarmless(t *testing.T) {
	dir := initWithSubscriptions(t)
	b := loadBundle(t, dir)
	data := filepath.Join(t.TempDir(), "data")
	policies := []string{"core-policy", b.g.GroupId + "-devices"}
	args := []string{"--dir", dir, "--ggcloud-data", data, "--ggcloud", "127.0.0.1:9443"}
	first := mustRegister(t, args...)
	state := readCloud(t, data, policies...)
	config1, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if second := mustRegister(t, args...); second != first {
		t.Errorf("second run says\n%s\nfirst said\n%s", second, first)
	}
	if again := readCloud(t, data, policies...); !reflect.DeepEqual(again, state) {
		t.Errorf("second register changed ggcloud:\n%+v\nwas\n%+v", again, state)
	}
	if config2, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Equal(config2, config1) {
		t.Errorf("second register changed config.json:\n%s\nwas\n%s", config2, config1)
	}

	if code, _, stderr := ggprov("subscription", "add", "--dir", dir, "--source", "cloud", "--subject", "cmd/dev1", "--target", "dev1"); code != 0 {
		t.Fatalf("subscription add: exit %d: %s", code, stderr)
	}
	mustRegister(t, args...)
	third := readCloud(t, data, policies...)
	subs := third.Groups[0].Subscriptions
	want := append(slices.Clone(state.Groups[0].Subscriptions),
		store.Subscription{Id: "s3", Source: "cloud", Subject: "cmd/dev1", Target: "arn:aws:iot:us-east-1:000000000000:thing/dev1"})
	if !reflect.DeepEqual(subs, want) {
		t.Errorf("after a new subscription: %+v, want %+v", subs, want)
	}
	third.Groups[0].Subscriptions = state.Groups[0].Subscriptions
	if !reflect.DeepEqual(third, state) {
		t.Errorf("a new subscription changed more than the subscriptions:\n%+v\nwas\n%+v", third, state)
	}
}

// TestRegisterRefusesAnotherRegion: a data directory fixed to another
// region is refused before anything is registered; a bundle of that
// region registers there.
func TestRegisterRefusesAnotherRegion(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cloud := openCloud(t, data)
	if _, err := cloud.UseIdentity(context.Background(), "eu-west-1", ""); err != nil {
		t.Fatal(err)
	}
	cloud.Close()

	dir := initWithSubscriptions(t)
	configBefore, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := ggprov("register", "--dir", dir, "--ggcloud-data", data, "--ggcloud", "127.0.0.1:9443", "--deploy")
	if code != 1 || !strings.Contains(stderr, "eu-west-1") || !strings.Contains(stderr, "us-east-1") {
		t.Errorf("exit %d, stderr %q; want 1 naming the data directory's region eu-west-1 and the bundle's us-east-1", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q on refusal", stdout)
	}
	s := readCloud(t, data)
	if len(s.Things) != 0 || len(s.Groups) != 0 {
		t.Errorf("refused register left things %+v, groups %+v", s.Things, s.Groups)
	}
	if s.Identity.Region != "eu-west-1" {
		t.Errorf("identity now %+v", s.Identity)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Equal(after, configBefore) {
		t.Error("refused register changed config.json")
	}

	eu := mustInit(t, "--region", "eu-west-1")
	mustRegister(t, "--dir", eu, "--ggcloud-data", data)
	if s := readCloud(t, data); len(s.Things) != 3 || len(s.Groups) != 1 || !strings.HasPrefix(s.Things[0].Arn, "arn:aws:iot:eu-west-1:") {
		t.Errorf("an eu-west-1 bundle: things %+v, groups %d", s.Things, len(s.Groups))
	}
}

func TestRegisterRefusals(t *testing.T) {
	dir := mustInit(t)
	configBefore, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	data := filepath.Join(parent, "data")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no --dir", []string{"--ggcloud-data", data}, 2, "--dir and --ggcloud-data are required"},
		{"no --ggcloud-data", []string{"--dir", dir}, 2, "--dir and --ggcloud-data are required"},
		{"no port", []string{"--dir", dir, "--ggcloud-data", data, "--ggcloud", "127.0.0.1"}, 2, `--ggcloud "127.0.0.1": want HOST:PORT`},
		{"port 0", []string{"--dir", dir, "--ggcloud-data", data, "--ggcloud", "127.0.0.1:0"}, 2, `--ggcloud "127.0.0.1:0"`},
		{"port too big", []string{"--dir", dir, "--ggcloud-data", data, "--ggcloud", "127.0.0.1:70000"}, 2, `--ggcloud "127.0.0.1:70000"`},
		{"named port", []string{"--dir", dir, "--ggcloud-data", data, "--ggcloud", "127.0.0.1:https"}, 2, `--ggcloud "127.0.0.1:https"`},
		{"no host", []string{"--dir", dir, "--ggcloud-data", data, "--ggcloud", ":9443"}, 2, `--ggcloud ":9443"`},
		{"URL", []string{"--dir", dir, "--ggcloud-data", data, "--ggcloud", "https://ggcloud:9443"}, 2, `--ggcloud "https://ggcloud:9443"`},
		{"bad host", []string{"--dir", dir, "--ggcloud-data", data, "--ggcloud", "gg cloud:9443"}, 2, `--ggcloud "gg cloud:9443"`},
		{"bad expiry", []string{"--dir", dir, "--ggcloud-data", data, "--certificate-expiry-ms", "week"}, 2, "certificate-expiry-ms"},
		{"not a bundle", []string{"--dir", filepath.Join(parent, "nope"), "--ggcloud-data", data}, 1, "config.json"},
		{"stray argument", []string{"--dir", dir, "--ggcloud-data", data, "127.0.0.1:9443"}, 2, `unexpected argument "127.0.0.1:9443"`},
		{"expiry over 30 days", []string{"--dir", dir, "--ggcloud-data", data, "--certificate-expiry-ms", "2592000001"}, 2, "want at most 2592000000 (30 days)"},
		{"short expiry deployed", []string{"--dir", dir, "--ggcloud-data", data, "--certificate-expiry-ms", "8000", "--deploy"}, 2, "can be registered for tests but not deployed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := ggprov(append([]string{"register"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q on failure", stdout)
			}
			if _, err := os.Stat(data); err == nil {
				t.Error("a refused register created the data directory")
			}
			if after, _ := os.ReadFile(filepath.Join(dir, "config.json")); !bytes.Equal(after, configBefore) {
				t.Error("a refused register changed config.json")
			}
		})
	}
}

// TestRegisterCertificateExpiry: --certificate-expiry-ms sets the
// group's MQTT server certificate validity in ggcloud.
func TestRegisterCertificateExpiry(t *testing.T) {
	dir := mustInit(t)
	data := filepath.Join(t.TempDir(), "data")
	const twoWeeks = 14 * 24 * 3600 * 1000
	stdout := mustRegister(t, "--dir", dir, "--ggcloud-data", data, "--certificate-expiry-ms", strconv.Itoa(twoWeeks))
	if !strings.Contains(stdout, strconv.Itoa(twoWeeks)) {
		t.Errorf("summary does not give the validity:\n%s", stdout)
	}
	if s := readCloud(t, data); len(s.Groups) != 1 || s.Groups[0].CertificateExpiryMs != twoWeeks {
		t.Errorf("groups %+v, want CertificateExpiryMs %d", s.Groups, twoWeeks)
	}
}

// TestRegisteredCoreCallsGGCloud: with nothing but the bundle (ggprov
// init, ggcloud-cert, register --ggcloud), the core reaches ggcloud's API
// where config.json says, verifies it against crypto.caPath, and its
// policy lets it report connectivity and get its MQTT server
// certificate from the group CA; a device's certificate may do neither.
func TestRegisteredCoreCallsGGCloud(t *testing.T) {
	dir := mustInit(t)
	if code, _, stderr := ggprov("ggcloud-cert", "--dir", dir); code != 0 {
		t.Fatalf("ggcloud-cert: exit %d: %s", code, stderr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := filepath.Join(t.TempDir(), "data")
	mustRegister(t, "--dir", dir, "--ggcloud-data", data, "--ggcloud", ln.Addr().String())

	// ggcloud serve, in-process, with the certificate ggcloud-cert wrote.
	st, err := store.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	serverCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "ggcloud/server.cert.pem"), filepath.Join(dir, "ggcloud/server.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: (&api.Server{Store: st, Region: testRegion, Account: testAccount, Log: slog.New(slog.DiscardHandler)}).Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAnyClientCert}))
	defer srv.Close()

	// The core's client, made from config.json as ggcore makes it.
	b := loadBundle(t, dir)
	rootCerts, err := pki.ReadCertificates(b.cfg.Crypto.CAPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(rootCerts[0])
	client := func(keyRef, certPath string) *controlplane.Client {
		key, err := keys.Open(keyRef)
		if err != nil {
			t.Fatal(err)
		}
		cert := readCert(t, certPath)
		id := &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
		c := controlplane.New(controlplane.Options{Host: b.cfg.CoreThing.GGHost, Port: b.cfg.CoreThing.GGHttpPort, Thing: "core", Timeout: 10 * time.Second,
			TLS: tlsconf.Client(roots, b.cfg.CoreThing.GGHost, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id, nil })})
		t.Cleanup(c.Close)
		return c
	}
	core := client(b.cfg.Crypto.Principals.IoTCertificate.PrivateKey, b.cfg.Crypto.Principals.IoTCertificate.CertificatePath)
	device := client("file://"+filepath.Join(dir, "devices/dev1.key.pem"), filepath.Join(dir, "devices/dev1.cert.pem"))

	ctx := context.Background()
	eps := []controlplane.Endpoint{{Id: "lan", HostAddress: "192.0.2.10", PortNumber: 8883}}
	if err := core.UpdateConnectivity(ctx, eps); err != nil {
		t.Fatalf("core UpdateConnectivity: %v", err)
	}
	if got, err := st.Connectivity("core"); err != nil || len(got) != 1 || got[0].HostAddress != "192.0.2.10" || got[0].PortNumber != 8883 {
		t.Errorf("stored connectivity %+v, %v", got, err)
	}
	serverKey, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "core"}, DNSNames: []string{"localhost"}}, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := core.CreateCertificate(ctx, csr)
	if err != nil {
		t.Fatalf("core CreateCertificate: %v", err)
	}
	groupCA := x509.NewCertPool()
	groupCA.AddCert(readCert(t, filepath.Join(dir, "certs/group-ca.pem")))
	for _, name := range []string{"localhost", "192.0.2.10"} {
		if _, err := got.Leaf.Verify(x509.VerifyOptions{Roots: groupCA, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("MQTT server certificate for %s does not verify against the bundle's group CA: %v", name, err)
		}
	}
	if !samePublic(got.Leaf.PublicKey, serverKey.Public()) {
		t.Error("MQTT server certificate is not for the CSR's key")
	}

	for call, err := range map[string]error{
		"UpdateConnectivityInfo": device.UpdateConnectivity(ctx, eps),
		"CreateCertificate":      func() error { _, err := device.CreateCertificate(ctx, csr); return err }(),
	} {
		var apiErr *controlplane.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || !strings.Contains(apiErr.Message, "greengrass:"+call) {
			t.Errorf("device calling %s as the core: %v; want 403 naming greengrass:%s", call, err, call)
		}
	}
}
