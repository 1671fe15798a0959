package admin

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

const discoverPolicy = `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"greengrass:Discover",
 "Resource":"arn:aws:iot:us-east-1:000000000000:thing/${iot:Connection.Thing.ThingName}"}}`

// pems makes certificates for things under one identity CA, and a group
// CA with its key.
type pems struct {
	ca            *pki.CA
	groupCA, key  string
	otherGroupKey string
}

func newPEMs(t *testing.T) *pems {
	t.Helper()
	ca, err := pki.NewCA("identity CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g, err := pki.NewCA("group CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.MarshalPEM(g.Key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := keyspec.RSA2048.Generate()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := keys.MarshalPEM(other)
	return &pems{ca: ca, groupCA: string(pki.EncodeCertificate(g.Cert)), key: string(key), otherGroupKey: string(otherKey)}
}

// cert returns a new certificate PEM for thing and its ID.
func (p *pems) cert(t *testing.T, thing string) ([]byte, string) {
	t.Helper()
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.ca.Issue(key.Public(), pki.Leaf{CommonName: thing, Usage: pki.ClientAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCertificate(c), pki.CertificateID(c.Raw)
}

func openClient(t *testing.T, dir string) *Client {
	t.Helper()
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// provision makes a fleet through the client: core gw and device sensor
// in group g1, with a subscription, deployed.
func provision(t *testing.T, c *Client, p *pems) (deployment string) {
	t.Helper()
	ctx := context.Background()
	for _, thing := range []string{"gw", "sensor"} {
		if _, err := c.CreateThing(ctx, thing); err != nil {
			t.Fatal(err)
		}
		pem, want := p.cert(t, thing)
		id, err := c.RegisterCertificate(ctx, thing, pem)
		if err != nil || id != want {
			t.Fatalf("RegisterCertificate(%s) = %s, %v; want %s", thing, id, err, want)
		}
		if err := c.PutPolicy(ctx, thing+"-policy", []byte(discoverPolicy)); err != nil {
			t.Fatal(err)
		}
		if err := c.AttachPolicy(ctx, thing+"-policy", id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateGroup(ctx, NewGroup{Id: "g1", Core: "gw", CACertificatePem: p.groupCA, CAKeyPem: p.key}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddDevice(ctx, "g1", "sensor", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddSubscription(ctx, "g1", store.Subscription{Id: "s1", Source: "sensor", Subject: "sensors/#", Target: "cloud"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetConnectivity(ctx, "gw", []store.Endpoint{{Id: "lan", HostAddress: "127.0.0.1", PortNumber: 8883}}); err != nil {
		t.Fatal(err)
	}
	id, err := c.Deploy(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestInProcessClient(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := newPEMs(t)
	c := openClient(t, dir)
	if c.Served() {
		t.Fatal("no ggcloud serves the directory, yet the client says it is served")
	}
	ctx := context.Background()
	id := provision(t, c, p)

	g, err := c.GetGroup(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	if g.Core.Thing != "gw" || g.Core.CertificateId == "" || len(g.Devices) != 1 || g.Devices[0].Thing != "sensor" ||
		len(g.Subscriptions) != 1 || g.Subscriptions[0].Source != "arn:aws:iot:us-east-1:000000000000:thing/sensor" ||
		g.CurrentDeploymentId != id || g.CertificateExpiryMs != config.DefaultCertificateExpiryMs {
		t.Errorf("group %+v", g)
	}
	d, err := c.DeploymentStatus(ctx, "g1", id)
	if err != nil || !d.Current || d.GroupVersionId != "1" || len(d.Statuses) != 1 || d.Statuses[0].Status != store.StatusInProgress {
		t.Errorf("deployment status = %+v, %v; want the current version 1, InProgress", d, err)
	}
	things, err := c.ListThings(ctx)
	if err != nil || len(things) != 2 || things[0].Name != "gw" || things[1].Arn != "arn:aws:iot:us-east-1:000000000000:thing/sensor" {
		t.Errorf("things = %+v, %v", things, err)
	}
	eps, err := c.Connectivity(ctx, "gw")
	if err != nil || len(eps) != 1 || eps[0].PortNumber != 8883 {
		t.Errorf("connectivity = %+v, %v", eps, err)
	}
	if id, err := c.Identity(ctx); err != nil || !id.Fixed || id.Region != "us-east-1" {
		t.Errorf("identity = %+v, %v; want us-east-1, fixed by the deployment", id, err)
	}
	if id, err := c.UseIdentity(ctx, "us-east-1", ""); err != nil || id.Account != "000000000000" {
		t.Errorf("UseIdentity with the fixed region = %+v, %v", id, err)
	}
	if _, err := c.UseIdentity(ctx, "eu-west-1", ""); !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "region us-east-1") {
		t.Errorf("UseIdentity with another region = %v; want a conflict naming the fixed region", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// The state is in the directory: a new client sees it.
	c = openClient(t, dir)
	list, err := c.ListDeployments(ctx, "g1")
	if err != nil || len(list) != 1 || list[0].DeploymentId != id {
		t.Errorf("deployments after reopening = %+v, %v", list, err)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, %v; want mode 0700", info.Mode(), err)
	}
}

func TestRefusals(t *testing.T) {
	p := newPEMs(t)
	c := openClient(t, t.TempDir())
	ctx := context.Background()
	provision(t, c, p)
	gwPEM, _ := p.cert(t, "gw")
	sensorPEM, _ := p.cert(t, "x")
	if _, err := c.CreateThing(ctx, "lamp"); err != nil {
		t.Fatal(err)
	}
	lampPEM, lampID := p.cert(t, "lamp")
	if _, err := c.RegisterCertificate(ctx, "lamp", lampPEM); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want string
		is   error
	}{
		{"certificate PEM that is not one", func() error { _, err := c.RegisterCertificate(ctx, "gw", []byte("hello")); return err }(), "CertificatePem", nil},
		{"two certificates at once", func() error {
			_, err := c.RegisterCertificate(ctx, "gw", append(gwPEM, sensorPEM...))
			return err
		}(), "2 certificates", nil},
		{"certificate of another thing", func() error { _, err := c.RegisterCertificate(ctx, "gw", lampPEM); return err }(), "registered for thing lamp", store.ErrExists},
		{"certificate of an unknown thing", func() error { _, err := c.RegisterCertificate(ctx, "nobody", gwPEM); return err }(), "thing nobody", store.ErrNotFound},
		{"bad policy", c.PutPolicy(ctx, "p", []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Maybe"}]}`)), "Effect", nil},
		{"attach to an unknown certificate", c.AttachPolicy(ctx, "gw-policy", strings.Repeat("0", 64)), "certificate", store.ErrNotFound},
		{"group with a bad CA", func() error {
			_, err := c.CreateGroup(ctx, NewGroup{Id: "g2", Core: "lamp", CACertificatePem: "nope", CAKeyPem: p.key})
			return err
		}(), "CACertificatePem", nil},
		{"group CA key of another CA", func() error {
			_, err := c.CreateGroup(ctx, NewGroup{Id: "g2", Core: "lamp", CACertificatePem: p.groupCA, CAKeyPem: p.otherGroupKey})
			return err
		}(), "not the key of the CA certificate", nil},
		{"group ID taken", func() error {
			_, err := c.CreateGroup(ctx, NewGroup{Id: "g1", Core: "lamp", CACertificatePem: p.groupCA, CAKeyPem: p.key})
			return err
		}(), "group g1 exists", store.ErrExists},
		{"device of an unknown group", c.AddDevice(ctx, "g9", "lamp", ""), "group g9", store.ErrNotFound},
		{"device with another thing's certificate", c.AddDevice(ctx, "g1", "sensor", lampID), "belongs to thing lamp", nil},
		{"subscription from a stranger", func() error {
			_, err := c.AddSubscription(ctx, "g1", store.Subscription{Id: "s2", Source: "lamp", Subject: "a", Target: "cloud"})
			return err
		}(), `Source "lamp"`, nil},
		{"deploy an unknown group", func() error { _, err := c.Deploy(ctx, "g9"); return err }(), "group g9", store.ErrNotFound},
		{"connectivity with a bad port", c.SetConnectivity(ctx, "gw", []store.Endpoint{{HostAddress: "h", PortNumber: 70000}}), "PortNumber", nil},
		{"status of an unknown deployment", func() error { _, err := c.DeploymentStatus(ctx, "g1", "nope"); return err }(), "deployment nope", store.ErrNotFound},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) || tt.is != nil && !errors.Is(tt.err, tt.is) {
			t.Errorf("%s: %v; want an error naming %q", tt.name, tt.err, tt.want)
		}
	}
	// Refusals changed nothing.
	g, err := c.GetGroup(ctx, "g1")
	if err != nil || len(g.Devices) != 1 || len(g.Subscriptions) != 1 || g.Core.Thing != "gw" {
		t.Errorf("group after refusals = %+v, %v", g, err)
	}
	if groups, err := c.ListGroups(ctx); err != nil || len(groups) != 1 {
		t.Errorf("groups after refusals = %+v, %v; want g1 only", groups, err)
	}
	if th, err := c.GetThing(ctx, "gw"); err != nil || len(th.Certificates) != 1 {
		t.Errorf("gw after refusals = %+v, %v; want one certificate", th, err)
	}
	if eps, _ := c.Connectivity(ctx, "gw"); len(eps) != 1 || eps[0].PortNumber != 8883 {
		t.Errorf("connectivity after a refusal = %+v", eps)
	}
	// Idempotent calls succeed.
	if th, err := c.CreateThing(ctx, "gw"); err != nil || th.Created {
		t.Errorf("CreateThing again = %+v, %v; want the existing thing", th, err)
	}
	if _, err := c.RegisterCertificate(ctx, "lamp", lampPEM); err != nil {
		t.Errorf("registering a certificate again: %v", err)
	}
}

func TestSocketClient(t *testing.T) {
	dir := t.TempDir()
	p := newPEMs(t)
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ln, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(st, nil)}
	go srv.Serve(ln)
	defer srv.Close()
	info, err := os.Stat(SocketPath(dir))
	if err != nil || info.Mode().Perm() != 0o600 || info.Mode()&os.ModeSocket == 0 {
		t.Fatalf("admin socket: %v, %v; want a socket of mode 0600", info.Mode(), err)
	}

	c := openClient(t, dir) // the store is locked: only the socket can answer
	if !c.Served() {
		t.Fatal("the client did not find the running server")
	}
	id := provision(t, c, p)
	if d, err := st.CurrentDeployment("g1"); err != nil || d.DeploymentId != id {
		t.Errorf("the server's store has deployment %+v, %v; want %s", d, err, id)
	}
}

func TestListenRefusesAnOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(dir); err == nil || !strings.Contains(err.Error(), "mode 0755") {
		t.Errorf("Listen in a 0755 directory = %v; want a refusal naming the mode", err)
	}
	if _, err := os.Stat(SocketPath(dir)); !os.IsNotExist(err) {
		t.Errorf("a refused Listen left a socket: %v", err)
	}
}

// TestRemoveDeviceAndSubscription: a device named by a subscription cannot
// be removed until the subscription goes; then both are gone and the next
// deployment has neither.
func TestRemoveDeviceAndSubscription(t *testing.T) {
	c := openClient(t, filepath.Join(t.TempDir(), "data"))
	provision(t, c, newPEMs(t))
	ctx := context.Background()
	if err := c.RemoveDevice(ctx, "g1", "sensor"); err == nil || !strings.Contains(err.Error(), "subscription s1") {
		t.Fatalf("removing a device still in subscription s1: %v; want a refusal naming s1", err)
	}
	if err := c.RemoveSubscription(ctx, "g1", "s9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing an unknown subscription: %v; want ErrNotFound", err)
	}
	if err := c.RemoveSubscription(ctx, "g1", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveDevice(ctx, "g1", "sensor"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveDevice(ctx, "g1", "sensor"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing it again: %v; want ErrNotFound", err)
	}
	g, err := c.GetGroup(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Devices) != 0 || len(g.Subscriptions) != 0 {
		t.Errorf("group after removal: devices %v, subscriptions %v; want none", g.Devices, g.Subscriptions)
	}
	if _, err := c.Deploy(ctx, "g1"); err != nil {
		t.Errorf("deploying the group without devices: %v", err)
	}
}
