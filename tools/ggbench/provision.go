package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// fleet is a provisioning bundle written by `ggprov init` (docs/design.md,
// "Provisioning — ggprov").
type fleet struct {
	Dir     string
	Port    int      // ggcore's MQTT port (coreThing.ggMqttPort)
	Devices []string // thing names, which are also the MQTT client IDs
}

// ConfigPath is ggcore's config.json.
func (f *fleet) ConfigPath() string { return filepath.Join(f.Dir, "config.json") }

// GroupPath is the deployed group.json.
func (f *fleet) GroupPath() string {
	return filepath.Join(f.Dir, "write", "deployment", "group", "group.json")
}

// RootCAPath is the identity CA, which signed the device certificates.
func (f *fleet) RootCAPath() string { return filepath.Join(f.Dir, "certs", "root.ca.pem") }

// GroupCAPath is the group CA, which signed the MQTT server certificate.
func (f *fleet) GroupCAPath() string { return filepath.Join(f.Dir, "certs", "group-ca.pem") }

// ServerCertPath is the MQTT server certificate, served by both brokers.
func (f *fleet) ServerCertPath() string {
	return filepath.Join(f.Dir, "write", "dcm", "mqtt-server.cert.pem")
}

// ServerKeyPath is the MQTT server certificate's key.
func (f *fleet) ServerKeyPath() string {
	return filepath.Join(f.Dir, "write", "dcm", "mqtt-server.key.pem")
}

// clientTLS returns a function making the mutual-TLS client configuration
// of a device: its own certificate, the group CA as the only root, and
// "localhost" as the server name (a SAN of the MQTT server certificate).
func (f *fleet) clientTLS() (func(device string) (*tls.Config, error), error) {
	pem, err := os.ReadFile(f.GroupCAPath())
	if err != nil {
		return nil, fmt.Errorf("fleet: read group CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("fleet: %s holds no PEM certificate", f.GroupCAPath())
	}
	return func(device string) (*tls.Config, error) {
		base := filepath.Join(f.Dir, "devices", device)
		cert, err := tls.LoadX509KeyPair(base+".cert.pem", base+".key.pem")
		if err != nil {
			return nil, fmt.Errorf("fleet: device %s: %w", device, err)
		}
		return &tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      roots,
			ServerName:   "localhost",
			MinVersion:   tls.VersionTLS12,
		}, nil
	}, nil
}

// buildTools builds ggprov and ggcore into dir with `go build`, for the
// paths not given on the command line. ggcore is built the way the
// gateway's image ships it (staticBuild): the memory figures are those of
// the core a gateway runs.
func buildTools(ctx context.Context, o *options, dir string, say func(string, ...any)) error {
	for _, t := range []struct {
		path *string
		pkg  string
		args []string
		env  []string
	}{
		{&o.ggprov, "github.com/ggcore/ggcore/tools/ggprov", nil, nil},
		{&o.ggcore, "github.com/ggcore/ggcore/core/cmd/ggcore", staticBuild, []string{"CGO_ENABLED=0"}},
	} {
		if *t.path != "" {
			continue
		}
		out := filepath.Join(dir, filepath.Base(t.pkg))
		say("building %s", t.pkg)
		cmd := exec.CommandContext(ctx, "go", slices.Concat([]string{"build"}, t.args, []string{"-o", out, t.pkg})...)
		cmd.Env = append(os.Environ(), t.env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", t.pkg, err, b)
		}
		*t.path = out
	}
	return nil
}

// staticBuild is how the gateway's image builds ggcore (with
// CGO_ENABLED=0): a static binary without symbols, as `make bench` builds
// $(BIN)/ggcore-static.
var staticBuild = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// describeBuild says how the binary at path was built: cgo or not
// (CGO_ENABLED in the build information Go embeds), statically or
// dynamically linked (an ELF interpreter), stripped or not (a symbol
// table), -trimpath, and the Go version. A file that is no Go ELF binary
// is described as such.
func describeBuild(path string) string {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "build unknown (" + err.Error() + ")"
	}
	f, err := elf.Open(path)
	if err != nil {
		return "build unknown (" + err.Error() + ")"
	}
	defer f.Close()
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	linked := "statically linked"
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			linked = "dynamically linked"
		}
	}
	parts := []string{"CGO_ENABLED=" + settings["CGO_ENABLED"] + ", " + linked}
	if f.Section(".symtab") == nil {
		parts = append(parts, "stripped")
	} else {
		parts = append(parts, "with symbols")
	}
	if settings["-trimpath"] == "true" {
		parts = append(parts, "-trimpath")
	}
	return strings.Join(append(parts, info.GoVersion), ", ")
}

// provision runs `ggprov init` for a core named "core" and the given
// devices, serving MQTT on 127.0.0.1:port, into a fresh directory dir.
func provision(ctx context.Context, ggprov, dir string, port int, keyType string, devices []string) (*fleet, error) {
	args := []string{"init", "--dir", dir, "--core", "core",
		"--mqtt-port", strconv.Itoa(port), "--bind", "127.0.0.1"}
	if keyType != "" {
		args = append(args, "--key-type", keyType)
	}
	for _, d := range devices {
		args = append(args, "--device", d)
	}
	cmd := exec.CommandContext(ctx, ggprov, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ggprov init (%d devices) into %s: %w\n%s", len(devices), dir, err, b)
	}
	f := &fleet{Dir: dir, Port: port, Devices: devices}
	for _, p := range []string{f.ConfigPath(), f.GroupPath(), f.RootCAPath(), f.GroupCAPath(), f.ServerCertPath(), f.ServerKeyPath()} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("ggprov init did not write the bundle as docs/design.md describes: %w", err)
		}
	}
	return f, nil
}

// subscription is one entry of group.json's Subscriptions (v1 field names).
type subscription struct {
	ID      string `json:"Id"`
	Source  string
	Subject string
	Target  string
}

// meshRoutes returns the subscriptions that route every publisher to every
// subscriber on bench/<publisher>/#. arns maps thing names to thing ARNs.
func meshRoutes(arns map[string]string, pubs, subs []string) ([]subscription, error) {
	var out []subscription
	for _, p := range pubs {
		src, ok := arns[p]
		if !ok {
			return nil, fmt.Errorf("group.json has no device %q", p)
		}
		for _, s := range subs {
			dst, ok := arns[s]
			if !ok {
				return nil, fmt.Errorf("group.json has no device %q", s)
			}
			out = append(out, subscription{
				ID:      "bench-" + p + "-" + s,
				Source:  src,
				Subject: "bench/" + p + "/#",
				Target:  dst,
			})
		}
	}
	return out, nil
}

// withSubscriptions returns group.json with its Subscriptions replaced by
// what route returns and every other field kept as it was. route gets the
// thing ARNs of the group's devices by thing name (the part of the ARN
// after ":thing/").
func withSubscriptions(group []byte, route func(arns map[string]string) ([]subscription, error)) ([]byte, error) {
	var g map[string]json.RawMessage
	if err := json.Unmarshal(group, &g); err != nil {
		return nil, fmt.Errorf("group.json: %w", err)
	}
	var devices []struct{ ThingArn string }
	if err := json.Unmarshal(g["Devices"], &devices); err != nil {
		return nil, fmt.Errorf("group.json: Devices: %w", err)
	}
	arns := make(map[string]string, len(devices))
	for i, d := range devices {
		_, name, ok := strings.Cut(d.ThingArn, ":thing/")
		if !ok || name == "" {
			return nil, fmt.Errorf("group.json: Devices[%d].ThingArn: %q is not a thing ARN", i, d.ThingArn)
		}
		arns[name] = d.ThingArn
	}
	subs, err := route(arns)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(subs)
	if err != nil {
		return nil, err
	}
	g["Subscriptions"] = raw
	return json.MarshalIndent(g, "", "  ")
}

// route rewrites the fleet's group.json's Subscriptions to what routes
// returns (see withSubscriptions).
func (f *fleet) route(routes func(arns map[string]string) ([]subscription, error)) error {
	data, err := os.ReadFile(f.GroupPath())
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	out, err := withSubscriptions(data, routes)
	if err != nil {
		return fmt.Errorf("fleet: %s: %w", f.GroupPath(), err)
	}
	return os.WriteFile(f.GroupPath(), out, 0o600)
}
