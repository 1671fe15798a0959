package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/config"
)

// get runs `ggprov config get` and returns the value.
func get(t *testing.T, dir, key string) string {
	t.Helper()
	code, stdout, stderr := ggprov("config", "get", "--dir", dir, key)
	if code != 0 {
		t.Fatalf("config get %s: exit %d: %s", key, code, stderr)
	}
	return strings.TrimSuffix(stdout, "\n")
}

// TestConfigAsTheDemoUsesIt runs what `make run` does to a new bundle:
// read the TPM device, the group and the core, move the MQTT server key
// to the device certificate manager, and set port, bind and connectivity.
func TestConfigAsTheDemoUsesIt(t *testing.T) {
	dir := mustInit(t, "--bind", "0.0.0.0", "--mqtt-port", "9883")
	path := filepath.Join(dir, "config.json")
	// A v1 field ggcore ignores must survive the edits.
	var doc map[string]any
	readJSON(t, path, &doc)
	doc["runtime"] = map[string]any{"cgroup": map[string]any{"useSystemd": "yes"}}
	data, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := config.LoadGroup(filepath.Join(dir, "write/deployment/group/group.json"))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"coreThing.thingArn":   "arn:aws:iot:us-east-1:000000000000:thing/core",
		"coreThing.ggMqttPort": "9883",
		"ggcore.localMqttBind": "0.0.0.0",
		"ggcore.connectivity":  "",
		"ggcore.tpm.device":    "/dev/tpmrm0",
		"group.GroupId":        g.GroupId,
	} {
		if got := get(t, dir, key); got != want {
			t.Errorf("config get %s = %q, want %q", key, got, want)
		}
	}
	if got := get(t, dir, "crypto.principals.MQTTServerCertificate"); !strings.HasPrefix(got, "file://") {
		t.Errorf("MQTT server key %q, want a file:// reference", got)
	}

	code, stdout, stderr := ggprov("config", "unset", "--dir", dir, "crypto.principals.MQTTServerCertificate")
	if code != 0 || stdout != "config.json: crypto.principals.MQTTServerCertificate removed\n" {
		t.Fatalf("config unset: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = ggprov("config", "set", "--dir", dir, "coreThing.ggMqttPort", "8883",
		"ggcore.localMqttBind", "127.0.0.1", "ggcore.connectivity", "127.0.0.1:18883,[fd00::1]:8883")
	if code != 0 || !strings.Contains(stdout, "config.json: coreThing.ggMqttPort 8883\n") {
		t.Fatalf("config set: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	cfg, err := config.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CoreThing.GGMqttPort != 8883 || cfg.GGCore.LocalMQTTBind != "127.0.0.1" ||
		strings.Join(cfg.GGCore.Connectivity, " ") != "127.0.0.1:18883 [fd00::1]:8883" ||
		cfg.Crypto.Principals.MQTTServerCertificate.PrivateKey != "" {
		t.Errorf("config after the edits: %+v %+v", cfg.CoreThing, cfg.GGCore)
	}
	if !strings.Contains(strings.Join(cfg.Ignored, " "), "runtime") {
		t.Errorf("the runtime field was lost: ignored %q", cfg.Ignored)
	}
	if cfg.CoreThing.ThingArn != "arn:aws:iot:us-east-1:000000000000:thing/core" || cfg.Crypto.Principals.IoTCertificate.PrivateKey == "" {
		t.Errorf("untouched settings changed: %+v", cfg)
	}
	if got := get(t, dir, "crypto.principals.MQTTServerCertificate"); got != "" {
		t.Errorf("MQTT server key %q after unset", got)
	}
	// Again, as every `make run` does: nothing changes.
	before, _ := os.ReadFile(path)
	if code, _, stderr := ggprov("config", "set", "--dir", dir, "coreThing.ggMqttPort", "8883",
		"ggcore.localMqttBind", "127.0.0.1", "ggcore.connectivity", "127.0.0.1:18883,[fd00::1]:8883"); code != 0 {
		t.Fatalf("config set again: exit %d: %s", code, stderr)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("setting the same values changed config.json:\n%s\n%s", before, after)
	}
	if code, _, stderr := ggprov("config", "unset", "--dir", dir, "ggcore.connectivity"); code != 0 || get(t, dir, "ggcore.connectivity") != "" {
		t.Errorf("config unset ggcore.connectivity: exit %d: %s", code, stderr)
	}
}

func TestConfigRefusals(t *testing.T) {
	dir := mustInit(t)
	path := filepath.Join(dir, "config.json")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown key", []string{"get", "--dir", dir, "coreThing.colour"}, 2, `"coreThing.colour": want a key to get: coreThing.thingArn, coreThing.ggMqttPort`},
		{"read-only key", []string{"set", "--dir", dir, "coreThing.thingArn", "arn:aws:iot:us-east-1:000000000000:thing/x"}, 2, `want a key to set: coreThing.ggMqttPort, ggcore.localMqttBind, ggcore.connectivity`},
		{"key that stays", []string{"unset", "--dir", dir, "coreThing.ggMqttPort"}, 2, `want a key to unset: ggcore.connectivity, crypto.principals.MQTTServerCertificate`},
		{"value missing", []string{"set", "--dir", dir, "coreThing.ggMqttPort", "8883", "ggcore.localMqttBind"}, 2, "want KEY VALUE pairs, got 3"},
		{"no key", []string{"get", "--dir", dir}, 2, "want KEY, got 0"},
		{"two keys to get", []string{"get", "--dir", dir, "coreThing.thingArn", "group.GroupId"}, 2, "want KEY, got 2"},
		{"no --dir", []string{"set", "coreThing.ggMqttPort", "8883"}, 2, "--dir is required"},
		{"bad port", []string{"set", "--dir", dir, "coreThing.ggMqttPort", "70000"}, 2, `coreThing.ggMqttPort: "70000": want a port (1-65535)`},
		{"host name to bind", []string{"set", "--dir", dir, "ggcore.localMqttBind", "localhost"}, 2, "ggcore.localMqttBind"},
		{"endpoint without a port", []string{"set", "--dir", dir, "ggcore.connectivity", "127.0.0.1:8883,gw.lan"}, 2, "ggcore.connectivity[1]"},
		{"given twice", []string{"set", "--dir", dir, "coreThing.ggMqttPort", "1", "coreThing.ggMqttPort", "2"}, 2, "coreThing.ggMqttPort given twice"},
		{"not a bundle", []string{"set", "--dir", filepath.Join(dir, "nope"), "coreThing.ggMqttPort", "8883"}, 1, "config.json"},
		{"get from no bundle", []string{"get", "--dir", filepath.Join(dir, "nope"), "coreThing.thingArn"}, 1, "config.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := ggprov(append([]string{"config"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, tt.code, tt.want)
			}
			if !strings.HasPrefix(stderr, "ggprov: config "+tt.args[0]+": ") {
				t.Errorf("stderr %q does not name the command", stderr)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("a refused edit changed config.json")
			}
		})
	}
}

// TestSubscriptionAddIfMissing: --if-missing adds a subscription once;
// without it a second, identical one is added as before.
func TestSubscriptionAddIfMissing(t *testing.T) {
	dir := mustInit(t)
	add := []string{"subscription", "add", "--dir", dir, "--source", "dev1", "--subject", "sensors/#", "--target", "cloud"}
	count := func() int {
		g, err := config.LoadGroup(filepath.Join(dir, "write/deployment/group/group.json"))
		if err != nil {
			t.Fatal(err)
		}
		return len(g.Subscriptions)
	}
	for i, want := range []string{"added subscription s1", "subscription s1: dev1 -> cloud on \"sensors/#\" exists"} {
		code, stdout, stderr := ggprov(append(add, "--if-missing")...)
		if code != 0 || !strings.Contains(stdout, want) || count() != 1 {
			t.Fatalf("run %d: exit %d, stdout %q, stderr %q, %d subscriptions; want %q and 1", i+1, code, stdout, stderr, count(), want)
		}
	}
	// Another target is another subscription.
	if code, _, stderr := ggprov("subscription", "add", "--dir", dir, "--if-missing", "--source", "dev1", "--subject", "sensors/#", "--target", "dev2"); code != 0 || count() != 2 {
		t.Fatalf("exit %d, %d subscriptions: %s", code, count(), stderr)
	}
	if code, _, stderr := ggprov(add...); code != 0 || count() != 3 {
		t.Fatalf("without --if-missing: exit %d, %d subscriptions: %s", code, count(), stderr)
	}
}
