package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var ggprovBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ggcore-main-test-")
	if err != nil {
		panic(err)
	}
	ggprovBin = filepath.Join(dir, "ggprov")
	build := exec.Command("go", "build", "-o", ggprovBin, "github.com/ggcore/ggcore/tools/ggprov")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ggprov:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bundle provisions a fresh fleet and returns its directory.
func bundle(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "b")
	args := append([]string{"init", "--dir", dir, "--core", "core", "--device", "dev1", "--mqtt-port", "1"}, extra...)
	if out, err := exec.Command(ggprovBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("ggprov init: %v\n%s", err, out)
	}
	return dir
}

// editJSON applies edit to the JSON object in path.
func editJSON(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func obj(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

// TestBadStartIsRefusedWithItsPath checks that every kind of bad input
// stops ggcore before it serves, naming the JSON path or file, and that
// the bundle is left as it was.
func TestBadStartIsRefusedWithItsPath(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, dir string)
		want string
	}{
		{"port out of range", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) { obj(m, "coreThing")["ggMqttPort"] = 70000 })
		}, "coreThing.ggMqttPort"},
		{"unknown TLS profile", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) { obj(m, "ggcore")["tlsProfile"] = "legacy" })
		}, "ggcore.tlsProfile"},
		{"EC key for SecretsManager", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) {
				obj(m, "crypto", "principals", "SecretsManager")["privateKeyPath"] = "file://" + filepath.Join(dir, "certs/core.key.pem")
			})
		}, "crypto.principals.SecretsManager.privateKeyPath: EC P-256 key given, SecretsManager requires RSA >= 2048"},
		{"missing IoT key", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "certs/core.key.pem"))
		}, "crypto.principals.IoTCertificate.privateKeyPath"},
		{"CA file is not a certificate", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "certs/root.ca.pem"), []byte("nope"), 0o644)
		}, "crypto.caPath"},
		{"server certificate of another key", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, "certs/group-ca.pem"))
			os.WriteFile(filepath.Join(dir, "write/dcm/mqtt-server.cert.pem"), data, 0o644)
		}, "does not match the key"},
		{"no server key and no control plane", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) {
				delete(obj(m, "crypto", "principals"), "MQTTServerCertificate")
				delete(obj(m, "coreThing"), "ggHost")
			})
		}, "MQTTServerCertificate.privateKeyPath: not set, so ggcore's device certificate manager makes the MQTT server key and gets its certificate from the control plane, but coreThing.ggHost is not set"},
		{"control plane without the IoT certificate", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) { obj(m, "coreThing")["ggHost"] = "127.0.0.1" })
			data, _ := os.ReadFile(filepath.Join(dir, "certs/group-ca.pem"))
			os.WriteFile(filepath.Join(dir, "certs/core.cert.pem"), data, 0o644)
		}, "crypto.principals.IoTCertificate"},
		{"malformed group", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "write/deployment/group/group.json"), []byte(`{"GroupId": 7}`), 0o644)
		}, "GroupId"},
		{"group of another core", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "write/deployment/group/group.json"), func(m map[string]any) {
				m["Cores"].([]any)[0].(map[string]any)["ThingArn"] = "arn:aws:iot:us-east-1:000000000000:thing/other"
			})
		}, "is not this core"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := bundle(t)
			tt.edit(t, dir)
			var stderr bytes.Buffer
			code := run([]string{"--config", filepath.Join(dir, "config.json")}, &stderr)
			if code != 1 {
				t.Fatalf("exit %d, want 1; log:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("log does not name %q:\n%s", tt.want, stderr.String())
			}
			if strings.Contains(stderr.String(), "ggcore ready") {
				t.Fatal("core reported ready")
			}
		})
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {"extra"}, {"--log-level", "loud"}} {
		var stderr bytes.Buffer
		if code := run(args, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
