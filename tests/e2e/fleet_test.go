package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// fleet is one provisioned bundle (ggprov init) for one core and its
// devices, listening on its own loopback port.
type fleet struct {
	dir  string // the bundle directory (ggprov init --dir)
	port int    // coreThing.ggMqttPort
}

// newFleet provisions a fresh bundle with ggprov for the given devices on
// a free loopback port.
func newFleet(t *testing.T, devices ...string) *fleet {
	t.Helper()
	return newFleetWith(t, nil, devices...)
}

// newFleetWith is newFleet with more ggprov init options (--key-store ...).
func newFleetWith(t *testing.T, initArgs []string, devices ...string) *fleet {
	t.Helper()
	f := &fleet{dir: filepath.Join(t.TempDir(), "bundle"), port: freePort(t)}
	args := []string{"init", "--dir", f.dir, "--core", "core"}
	for _, d := range devices {
		args = append(args, "--device", d)
	}
	args = append(args, "--mqtt-port", strconv.Itoa(f.port), "--bind", "127.0.0.1")
	args = append(args, initArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin.ggprov, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ggprov %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return f
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int { return testtool.FreePort(t) }

func (f *fleet) configPath() string { return filepath.Join(f.dir, "config.json") }
func (f *fleet) groupPath() string {
	return filepath.Join(f.dir, "write", "deployment", "group", "group.json")
}
func (f *fleet) groupCA() string            { return filepath.Join(f.dir, "certs", "group-ca.pem") }
func (f *fleet) rootCA() string             { return filepath.Join(f.dir, "certs", "root.ca.pem") }
func (f *fleet) rootCAKey() string          { return filepath.Join(f.dir, "certs", "root.ca.key") }
func (f *fleet) certFile(dev string) string { return filepath.Join(f.dir, "devices", dev+".cert.pem") }
func (f *fleet) keyFile(dev string) string  { return filepath.Join(f.dir, "devices", dev+".key.pem") }
func (f *fleet) addr() string               { return net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port)) }

// identity returns the device's own certificate and key files.
func (f *fleet) identity(dev string) identity {
	return identity{certFile: f.certFile(dev), keyFile: f.keyFile(dev)}
}

// readJSON and writeJSON edit a JSON file as generic maps, so that fields
// this test does not know survive the edit.
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return m
}

func writeJSON(t *testing.T, path string, m map[string]any) {
	t.Helper()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatalf("encode %s: %v", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// devices returns group.json's Devices entries.
func (f *fleet) devices(t *testing.T, g map[string]any) []map[string]any {
	t.Helper()
	list, ok := g["Devices"].([]any)
	if !ok {
		t.Fatalf("%s: Devices is not a list: %v", f.groupPath(), g["Devices"])
	}
	out := make([]map[string]any, 0, len(list))
	for _, d := range list {
		m, ok := d.(map[string]any)
		if !ok {
			t.Fatalf("%s: Devices entry is not an object: %v", f.groupPath(), d)
		}
		out = append(out, m)
	}
	return out
}

// device returns the Devices entry of the thing named dev.
func (f *fleet) device(t *testing.T, g map[string]any, dev string) map[string]any {
	t.Helper()
	for _, d := range f.devices(t, g) {
		if arn, _ := d["ThingArn"].(string); strings.HasSuffix(arn, ":thing/"+dev) {
			return d
		}
	}
	t.Fatalf("%s: no device with thing name %q", f.groupPath(), dev)
	return nil
}

// route is one subscription-table entry in device names: from and to are
// thing names, or "cloud".
type route struct{ from, subject, to string }

// setRoutes replaces group.json's Subscriptions with routes (ids s1, s2, ...).
func (f *fleet) setRoutes(t *testing.T, routes ...route) {
	t.Helper()
	g := readJSON(t, f.groupPath())
	end := func(name string) string {
		if name == "cloud" {
			return name
		}
		arn, _ := f.device(t, g, name)["ThingArn"].(string)
		return arn
	}
	subs := make([]any, 0, len(routes))
	for i, r := range routes {
		subs = append(subs, map[string]any{
			"Id":      fmt.Sprintf("s%d", i+1),
			"Source":  end(r.from),
			"Subject": r.subject,
			"Target":  end(r.to),
		})
	}
	g["Subscriptions"] = subs
	writeJSON(t, f.groupPath(), g)
}

// registerCertificate makes group.json register der as dev's certificate.
func (f *fleet) registerCertificate(t *testing.T, dev string, der []byte) {
	t.Helper()
	g := readJSON(t, f.groupPath())
	d := f.device(t, g, dev)
	arn, _ := d["CertificateArn"].(string)
	i := strings.LastIndex(arn, "cert/")
	if i < 0 {
		t.Fatalf("%s: device %s CertificateArn %q has no cert/ part", f.groupPath(), dev, arn)
	}
	d["CertificateArn"] = arn[:i+len("cert/")] + certificateID(der)
	writeJSON(t, f.groupPath(), g)
}

// setConfig sets a field of config.json by its dotted JSON path, creating
// objects on the way.
func (f *fleet) setConfig(t *testing.T, path string, value any) {
	t.Helper()
	c := readJSON(t, f.configPath())
	m := c
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
	writeJSON(t, f.configPath(), c)
}

// removeDevice deletes dev from group.json's Devices.
func (f *fleet) removeDevice(t *testing.T, dev string) {
	t.Helper()
	g := readJSON(t, f.groupPath())
	var kept []any
	for _, d := range f.devices(t, g) {
		if arn, _ := d["ThingArn"].(string); !strings.HasSuffix(arn, ":thing/"+dev) {
			kept = append(kept, d)
		}
	}
	g["Devices"] = kept
	writeJSON(t, f.groupPath(), g)
}
