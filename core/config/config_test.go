package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goldenConfig is the config.json of CONTRACTS.md, as ggprov writes it.
const goldenConfig = `{
  "coreThing": { "thingArn": "arn:aws:iot:us-east-1:000000000000:thing/core", "iotHost": "127.0.0.1",
    "ggHost": "127.0.0.1", "iotMqttPort": 8884, "ggHttpPort": 8443, "ggMqttPort": 8883, "keepAlive": 600 },
  "crypto": {
    "caPath": "file:///DIR/certs/root.ca.pem",
    "principals": {
      "IoTCertificate": { "privateKeyPath": "file:///DIR/certs/core.key.pem", "certificatePath": "file:///DIR/certs/core.cert.pem" },
      "MQTTServerCertificate": { "privateKeyPath": "file:///DIR/write/dcm/mqtt-server.key.pem" },
      "SecretsManager": { "privateKeyPath": "file:///DIR/certs/secrets.key.pem" }
    }
  },
  "writeDirectory": "/DIR/write",
  "ggcore": { "tlsProfile": "strict", "localMqttBind": "127.0.0.1" }
}`

// v1Config is a GGC v1.11 config.json with hardware security, as the v1
// documentation shows it, plus the optional v1 fields ggcore ignores.
const v1Config = `{
    "coreThing": {
        "caPath": "root.ca.pem",
        "certPath": "hash.cert.pem",
        "keyPath": "hash.private.key",
        "thingArn": "arn:aws:iot:us-west-2:123456789012:thing/core-thing-name",
        "iotHost": "abcd123456wxyz-ats.iot.us-west-2.amazonaws.com",
        "ggHost": "greengrass-ats.iot.us-west-2.amazonaws.com",
        "iotHttpPort": 443,
        "ggHttpPort": 443,
        "iotMqttPort": 443,
        "keepAlive": 600,
        "ggDaemonPort": 8000,
        "systemComponentAuthTimeout": 5000,
        "mqttOperationTimeout": 10,
        "networkProxy": {
            "noProxyAddresses": "http://128.12.34.56,www.mywebsite.com",
            "proxy": { "url": "https://my-proxy-server:1100", "username": "Mary_Major", "password": "pass@word1357" }
        }
    },
    "runtime": {
        "maxWorkItemCount": 1024,
        "maxConcurrentLimit": 25,
        "lruSize": 25,
        "mountAllBlockDevices": "no",
        "cgroup": { "useSystemd": "yes" }
    },
    "managedRespawn": false,
    "mqttMaxConnectionRetryInterval": 60,
    "crypto": {
        "PKCS11": {
            "OpenSSLEngine": "/usr/lib/x86_64-linux-gnu/engines-1.1/pkcs11.so",
            "P11Provider": "/usr/lib/softhsm/libsofthsm2.so",
            "slotLabel": "greengrass",
            "slotUserPin": "1234"
        },
        "principals": {
            "IoTCertificate": {
                "privateKeyPath": "pkcs11:object=core-private-key-label;type=private",
                "certificatePath": "file:///greengrass/certs/hash.cert.pem"
            },
            "MQTTServerCertificate": { "privateKeyPath": "pkcs11:object=server-private-key-label;type=private" },
            "SecretsManager": { "privateKeyPath": "pkcs11:object=core-private-key-label;type=private" }
        },
        "caPath": "file:///greengrass/certs/root.ca.pem"
    },
    "writeDirectory": "/var/snap/aws-iot-greengrass/current/ggc-write-directory",
    "pidFileDirectory": "/var/snap/aws-iot-greengrass/current/pidFileDirectory"
}`

// minimalConfig has only the required fields.
const minimalConfig = `{
  "coreThing": { "thingArn": "arn:aws:iot:eu-central-1:111122223333:thing/gw-01" },
  "crypto": {
    "caPath": "file:///greengrass/certs/root.ca.pem",
    "principals": { "IoTCertificate": {
      "privateKeyPath": "tpm2:handle=0x81000002", "certificatePath": "file:///greengrass/certs/core.cert.pem" } }
  },
  "writeDirectory": "/greengrass/ggc/var"
}`

func TestParseConfigGolden(t *testing.T) {
	c, err := ParseConfig([]byte(goldenConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		CoreThing: CoreThing{
			ThingArn: "arn:aws:iot:us-east-1:000000000000:thing/core", ThingName: "core",
			IotHost: "127.0.0.1", IotMqttPort: 8884, GGHost: "127.0.0.1", GGHttpPort: 8443, GGMqttPort: 8883, KeepAlive: 600,
			MQTTMaxConnectionRetryInterval: 60,
		},
		Crypto: Crypto{
			CAPath: "/DIR/certs/root.ca.pem",
			Principals: Principals{
				IoTCertificate:        IoTCertificate{PrivateKey: "file:///DIR/certs/core.key.pem", CertificatePath: "/DIR/certs/core.cert.pem"},
				MQTTServerCertificate: Principal{PrivateKey: "file:///DIR/write/dcm/mqtt-server.key.pem"},
				SecretsManager:        Principal{PrivateKey: "file:///DIR/certs/secrets.key.pem"},
			},
		},
		WriteDirectory: "/DIR/write",
		GGCore:         GGCore{TLSProfile: "strict", TPM: TPM{Device: "/dev/tpmrm0"}, LocalMQTTBind: "127.0.0.1", DeploymentPollSeconds: 30},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if got := c.GroupPath(); got != "/DIR/write/deployment/group/group.json" {
		t.Errorf("GroupPath = %q", got)
	}
	if got := c.ServerCertPath(); got != "/DIR/write/dcm/mqtt-server.cert.pem" {
		t.Errorf("ServerCertPath = %q", got)
	}
}

func TestParseConfigV1(t *testing.T) {
	c, err := ParseConfig([]byte(v1Config))
	if err != nil {
		t.Fatal(err)
	}
	wantIgnored := []string{
		"coreThing.caPath", "coreThing.certPath", "coreThing.keyPath", "coreThing.iotHttpPort",
		"coreThing.systemComponentAuthTimeout", "coreThing.mqttOperationTimeout",
		"coreThing.networkProxy", "runtime", "managedRespawn", "mqttMaxConnectionRetryInterval",
		"crypto.PKCS11.OpenSSLEngine", "pidFileDirectory",
	}
	if !reflect.DeepEqual(c.Ignored, wantIgnored) {
		t.Errorf("Ignored = %q\nwant      %q", c.Ignored, wantIgnored)
	}
	if c.CoreThing.ThingName != "core-thing-name" || c.CoreThing.IotMqttPort != 443 || c.CoreThing.GGHttpPort != 443 {
		t.Errorf("coreThing = %+v", c.CoreThing)
	}
	if c.CoreThing.GGMqttPort != DefaultGGMqttPort {
		t.Errorf("ggMqttPort = %d, want default %d", c.CoreThing.GGMqttPort, DefaultGGMqttPort)
	}
	wantP11 := &PKCS11{P11Provider: "/usr/lib/softhsm/libsofthsm2.so", SlotLabel: "greengrass", SlotUserPin: "1234"}
	if !reflect.DeepEqual(c.Crypto.PKCS11, wantP11) {
		t.Errorf("PKCS11 = %+v", c.Crypto.PKCS11)
	}
	if got := c.Crypto.Principals.IoTCertificate.PrivateKey; got != "pkcs11:object=core-private-key-label;type=private" {
		t.Errorf("IoTCertificate key kept as %q", got)
	}
	if c.WriteDirectory != "/var/snap/aws-iot-greengrass/current/ggc-write-directory" {
		t.Errorf("writeDirectory = %q", c.WriteDirectory)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(minimalConfig))
	if err != nil {
		t.Fatal(err)
	}
	ct := c.CoreThing
	if ct.IotMqttPort != 8883 || ct.GGHttpPort != 8443 || ct.GGMqttPort != 8883 || ct.KeepAlive != 600 {
		t.Errorf("coreThing defaults = %+v", ct)
	}
	g := c.GGCore
	if g.TLSProfile != "strict" || g.TPM.Device != "/dev/tpmrm0" || g.LocalMQTTBind != "" || g.DisconnectOnRotation {
		t.Errorf("ggcore defaults = %+v", g)
	}
	if c.Crypto.PKCS11 != nil || c.Ignored != nil {
		t.Errorf("PKCS11 = %v, Ignored = %q; want nil", c.Crypto.PKCS11, c.Ignored)
	}
	if got := c.SecretsKey(); got != "tpm2:handle=0x81000002" {
		t.Errorf("SecretsKey without SecretsManager = %q, want the IoTCertificate key", got)
	}
	c.Crypto.Principals.SecretsManager.PrivateKey = "file:///k.pem"
	if got := c.SecretsKey(); got != "file:///k.pem" {
		t.Errorf("SecretsKey = %q, want the SecretsManager key", got)
	}
}

func TestParseConfigAccepts(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	tests := []struct {
		name  string
		doc   doc
		check func(*Config) bool
	}{
		{"compat profile", base.set("ggcore.tlsProfile", "compat"), func(c *Config) bool { return c.GGCore.TLSProfile == "compat" }},
		{"IPv6 bind", base.set("ggcore.localMqttBind", "::1"), func(c *Config) bool { return c.GGCore.LocalMQTTBind == "::1" }},
		{"all interfaces", base.set("ggcore.localMqttBind", ""), func(c *Config) bool { return c.GGCore.LocalMQTTBind == "" }},
		{"no ggcore object", base.del("ggcore"), func(c *Config) bool { return c.GGCore.TLSProfile == "strict" }},
		{"swtpm tcp", base.set("ggcore.tpm.device", "tcp://127.0.0.1:2321"), func(c *Config) bool { return c.GGCore.TPM.Device == "tcp://127.0.0.1:2321" }},
		{"swtpm unix", base.set("ggcore.tpm.device", "unix:///run/swtpm.sock"), func(c *Config) bool { return true }},
		{"disconnect on rotation", base.set("ggcore.disconnectOnRotation", true), func(c *Config) bool { return c.GGCore.DisconnectOnRotation }},
		{"no MQTT server key", base.del("crypto.principals.MQTTServerCertificate"), func(c *Config) bool {
			return c.Crypto.Principals.MQTTServerCertificate.PrivateKey == ""
		}},
		{"no SecretsManager", base.del("crypto.principals.SecretsManager"), func(c *Config) bool {
			return c.SecretsKey() == c.Crypto.Principals.IoTCertificate.PrivateKey
		}},
		{"null optional", base.set("coreThing.iotHost", nil), func(c *Config) bool { return c.CoreThing.IotHost == "" }},
		{"keepAlive bounds", base.set("coreThing.keepAlive", 30), func(c *Config) bool { return c.CoreThing.KeepAlive == 30 }},
		{"port 1", base.set("coreThing.ggMqttPort", 1), func(c *Config) bool { return c.CoreThing.GGMqttPort == 1 }},
		{"unclean paths", base.set("writeDirectory", "/DIR//write/").set("crypto.caPath", "file:///DIR/./certs//root.ca.pem"),
			func(c *Config) bool {
				return c.WriteDirectory == "/DIR/write" && c.Crypto.CAPath == "/DIR/certs/root.ca.pem"
			}},
		{"escaped file URI", base.set("crypto.caPath", "file:///my%20certs/root%23ca.pem"),
			func(c *Config) bool { return c.Crypto.CAPath == "/my certs/root#ca.pem" }},
		{"file://localhost", base.set("crypto.caPath", "file://localhost/ca.pem"), func(c *Config) bool { return c.Crypto.CAPath == "/ca.pem" }},
		{"pkcs11 key with URI module/token/pin", base.set("crypto.principals.IoTCertificate.privateKeyPath",
			"pkcs11:token=gg;object=core;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234"),
			func(c *Config) bool { return c.Crypto.PKCS11 == nil }},
		{"AWS host names", base.set("coreThing.iotHost", "a1b2c3-ats.iot.us-east-1.amazonaws.com").set("coreThing.ggHost", "greengrass-ats.iot.us-east-1.amazonaws.com"),
			func(c *Config) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(tt.doc.bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected result %+v", c)
			}
		})
	}
}

func TestParseConfigProblems(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	const iot = "crypto.principals.IoTCertificate"
	tests := []struct {
		name         string
		doc          doc
		path, reason string
	}{
		// required fields
		{"no coreThing", base.del("coreThing"), "coreThing", "required"},
		{"no thingArn", base.del("coreThing.thingArn"), "coreThing.thingArn", "required: the core's thing ARN"},
		{"null thingArn", base.set("coreThing.thingArn", nil), "coreThing.thingArn", "required"},
		{"no crypto", base.del("crypto"), "crypto", "required"},
		{"no caPath", base.del("crypto.caPath"), "crypto.caPath", "required"},
		{"no principals", base.del("crypto.principals"), "crypto.principals", "required"},
		{"no IoTCertificate", base.del(iot), iot, "required"},
		{"no IoT key", base.del(iot + ".privateKeyPath"), iot + ".privateKeyPath", "required"},
		{"no IoT cert", base.del(iot + ".certificatePath"), iot + ".certificatePath", "required"},
		{"no writeDirectory", base.del("writeDirectory"), "writeDirectory", "required"},
		// ARN
		{"thing ARN short account", base.set("coreThing.thingArn", "arn:aws:iot:us-east-1:123:thing/core"), "coreThing.thingArn", "12-digit account"},
		{"thing ARN wrong service", base.set("coreThing.thingArn", "arn:aws:s3:us-east-1:000000000000:thing/core"), "coreThing.thingArn", `service "s3", want iot`},
		{"thing ARN no thing/", base.set("coreThing.thingArn", "arn:aws:iot:us-east-1:000000000000:cert/abc"), "coreThing.thingArn", "does not start with thing/"},
		{"thing ARN bad name", base.set("coreThing.thingArn", "arn:aws:iot:us-east-1:000000000000:thing/a b"), "coreThing.thingArn", "thing name"},
		{"thing ARN empty name", base.set("coreThing.thingArn", "arn:aws:iot:us-east-1:000000000000:thing/"), "coreThing.thingArn", "thing name"},
		{"not an ARN", base.set("coreThing.thingArn", "core"), "coreThing.thingArn", "not a thing ARN"},
		{"bad partition", base.set("coreThing.thingArn", "arn:azure:iot:us-east-1:000000000000:thing/core"), "coreThing.thingArn", "partition"},
		{"empty region", base.set("coreThing.thingArn", "arn:aws:iot::000000000000:thing/core"), "coreThing.thingArn", "region"},
		// numbers
		{"port too big", base.set("coreThing.ggMqttPort", 70000), "coreThing.ggMqttPort", "70000 is not a port (1-65535)"},
		{"port zero", base.set("coreThing.iotMqttPort", 0), "coreThing.iotMqttPort", "0 is not a port"},
		{"port negative", base.set("coreThing.ggHttpPort", -1), "coreThing.ggHttpPort", "-1 is not a port"},
		{"port fraction", base.set("coreThing.ggMqttPort", 8883.5), "coreThing.ggMqttPort", "want a whole number, got 8883.5"},
		{"port string", base.set("coreThing.ggMqttPort", "8883"), "coreThing.ggMqttPort", "want a whole number, got string"},
		{"port huge", base.set("coreThing.ggMqttPort", json.Number("123456789012345678901234567890")), "coreThing.ggMqttPort", "out of range"},
		{"keepAlive low", base.set("coreThing.keepAlive", 29), "coreThing.keepAlive", "29 is not a keep-alive period in seconds (30-1200)"},
		{"keepAlive high", base.set("coreThing.keepAlive", 1201), "coreThing.keepAlive", "(30-1200)"},
		// hosts
		{"host with scheme", base.set("coreThing.iotHost", "https://example.com"), "coreThing.iotHost", "has a scheme"},
		{"host with port", base.set("coreThing.iotHost", "example.com:8883"), "coreThing.iotHost", "has a port"},
		{"host empty", base.set("coreThing.ggHost", ""), "coreThing.ggHost", "empty"},
		{"host bad char", base.set("coreThing.ggHost", "exa mple.com"), "coreThing.ggHost", "not a host name"},
		// types
		{"coreThing not object", base.set("coreThing", "x"), "coreThing", "want a JSON object, got string"},
		{"thingArn number", base.set("coreThing.thingArn", 5), "coreThing.thingArn", "want a string, got number"},
		{"principal not object", base.set(iot, []any{}), iot, "want a JSON object, got array"},
		{"bool wrong", base.set("ggcore.disconnectOnRotation", "yes"), "ggcore.disconnectOnRotation", "want true or false, got string"},
		// unknown fields
		{"unknown top", base.set("coreThin", map[string]any{}), "coreThin", `did you mean "coreThing"?`},
		{"unknown ggcore", base.set("ggcore.tlsProfle", "strict"), "ggcore.tlsProfle", "unknown field"},
		{"suggestion", base.set("ggcore.tlsProfle", "strict"), "ggcore.tlsProfle", `did you mean "tlsProfile"?`},
		{"case", base.set("coreThing.ThingArn", "x"), "coreThing.ThingArn", `did you mean "thingArn"? (names are case-sensitive)`},
		{"far off lists known", base.set("ggcore.zzzzzz", 1), "ggcore.zzzzzz", "known fields: tlsProfile, tpm, localMqttBind, disconnectOnRotation"},
		{"unknown principal", base.set("crypto.principals.GGCloudSpooler", map[string]any{}), "crypto.principals.GGCloudSpooler", "unknown field"},
		{"unknown in principal", base.set(iot+".keyPath", "x"), iot + ".keyPath", "unknown field"},
		{"unknown tpm", base.set("ggcore.tpm.path", "x"), "ggcore.tpm.path", "unknown field"},
		// key references
		{"key bare path", base.set(iot+".privateKeyPath", "/DIR/core.key"), iot + ".privateKeyPath", "want a file URI, file:///DIR/core.key"},
		{"key two slashes", base.set(iot+".privateKeyPath", "file://DIR/core.key"), iot + ".privateKeyPath", `names host "DIR"`},
		{"key bad scheme", base.set("crypto.principals.SecretsManager.privateKeyPath", "vault:x"), "crypto.principals.SecretsManager.privateKeyPath", "not a key reference"},
		{"key pkcs11 cert type", base.set("crypto.principals.MQTTServerCertificate.privateKeyPath", "pkcs11:object=k;type=cert"),
			"crypto.principals.MQTTServerCertificate.privateKeyPath", "want type=private"},
		{"key tpm range", base.set(iot+".privateKeyPath", "tpm2:handle=0x80000001"), iot + ".privateKeyPath", "not a persistent handle"},
		{"pkcs11 key without module", base.set(iot+".privateKeyPath", "pkcs11:object=k;type=private;token=t?pin-value=1"),
			iot + ".privateKeyPath", "needs a module: set crypto.PKCS11.P11Provider"},
		{"pkcs11 key without token", base.set(iot+".privateKeyPath", "pkcs11:object=k;type=private?module-path=/m.so&pin-value=1"),
			iot + ".privateKeyPath", "needs a token"},
		{"pkcs11 key without PIN", base.set(iot+".privateKeyPath", "pkcs11:object=k;type=private;token=t?module-path=/m.so"),
			iot + ".privateKeyPath", "needs a PIN"},
		// file URIs
		{"caPath bare", base.set("crypto.caPath", "/DIR/ca.pem"), "crypto.caPath", "want a file URI, file:///DIR/ca.pem"},
		{"caPath relative", base.set("crypto.caPath", "root.ca.pem"), "crypto.caPath", "not a file URI"},
		{"caPath pkcs11", base.set("crypto.caPath", "pkcs11:object=ca"), "crypto.caPath", "not a file URI"},
		{"caPath query", base.set("crypto.caPath", "file:///ca.pem?x"), "crypto.caPath", "%3F"},
		{"caPath fragment", base.set("crypto.caPath", "file:///ca.pem#x"), "crypto.caPath", "%23"},
		{"caPath bad escape", base.set("crypto.caPath", "file:///ca%zz.pem"), "crypto.caPath", "%25"},
		{"caPath directory", base.set("crypto.caPath", "file:///certs/"), "crypto.caPath", "directory"},
		{"certificatePath tpm", base.set(iot+".certificatePath", "tpm2:handle=0x81000001"), iot + ".certificatePath", "not a file URI"},
		// PKCS11 object
		{"PKCS11 no provider", base.set("crypto.PKCS11", map[string]any{"slotLabel": "x"}), "crypto.PKCS11.P11Provider", "required"},
		{"PKCS11 relative provider", base.set("crypto.PKCS11", map[string]any{"P11Provider": "libsofthsm2.so"}), "crypto.PKCS11.P11Provider", "not an absolute path"},
		{"PKCS11 long label", base.set("crypto.PKCS11", map[string]any{"P11Provider": "/m.so", "slotLabel": strings.Repeat("x", 33)}),
			"crypto.PKCS11.slotLabel", "at most 32"},
		// writeDirectory
		{"writeDirectory relative", base.set("writeDirectory", "write"), "writeDirectory", "not an absolute path"},
		{"writeDirectory URI", base.set("writeDirectory", "file:///write"), "writeDirectory", "is a URI"},
		// ggcore
		{"tlsProfile", base.set("ggcore.tlsProfile", "legacy"), "ggcore.tlsProfile", `want "strict" (default) or "compat"`},
		{"tlsProfile empty", base.set("ggcore.tlsProfile", ""), "ggcore.tlsProfile", `want "strict"`},
		{"bind host name", base.set("ggcore.localMqttBind", "localhost"), "ggcore.localMqttBind", "not an IP address"},
		{"bind with port", base.set("ggcore.localMqttBind", "127.0.0.1:8883"), "ggcore.localMqttBind", "not an IP address"},
		{"tpm device relative", base.set("ggcore.tpm.device", "tpmrm0"), "ggcore.tpm.device", "/dev/tpmrm0"},
		{"tpm tcp no port", base.set("ggcore.tpm.device", "tcp://127.0.0.1"), "ggcore.tpm.device", "tcp://HOST:PORT"},
		{"tpm tcp bad port", base.set("ggcore.tpm.device", "tcp://127.0.0.1:99999"), "ggcore.tpm.device", "not a port"},
		{"tpm unix relative", base.set("ggcore.tpm.device", "unix://run/sock"), "ggcore.tpm.device", "three slashes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(tt.doc.bytes())
			wantProblem(t, err, tt.path, tt.reason)
		})
	}
}

func TestParseConfigDocument(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "empty: want a JSON object"},
		{"spaces", " \n ", "empty"},
		{"array", "[]", "want a JSON object, got array"},
		{"syntax", "{\n  \"coreThing\": {,\n}", "invalid JSON at line 2, column 17"},
		{"trailing garbage", goldenConfig + "x", "invalid JSON"},
		{"not UTF-8", "{\"writeDirectory\": \"/\xff\"}", "not valid UTF-8"},
		{"duplicate", `{"writeDirectory": "/a", "writeDirectory": "/b"}`, "writeDirectory: appears more than once"},
		{"too big", "{" + strings.Repeat(" ", MaxFileSize) + "}", "more than the 4194304 bytes (4 MiB)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// A byte order mark (Windows editors) is not an error.
	if _, err := ParseConfig(append([]byte("\xef\xbb\xbf"), goldenConfig...)); err != nil {
		t.Errorf("with BOM: %v", err)
	}
}

func TestParseConfigReportsEveryProblem(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	d := base.set("coreThing.ggMqttPort", 0).set("ggcore.tlsProfile", "x").del("writeDirectory").set("runtime", 1)
	_, err := ParseConfig(d.bytes())
	got := problems(err)
	var paths []string
	for _, p := range got {
		paths = append(paths, p.Path)
	}
	want := []string{"coreThing.ggMqttPort", "ggcore.tlsProfile", "writeDirectory"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("problems at %q, want %q\n%v", paths, want, err)
	}
}

func TestParseConfigCapsProblems(t *testing.T) {
	d := parseDoc(t, goldenConfig)
	for i := range 2 * maxProblems {
		d = d.set(fmt.Sprintf("junk%d", i), 1)
	}
	_, err := ParseConfig(d.bytes())
	if n := len(problems(err)); n != maxProblems {
		t.Errorf("%d problems listed, want %d", n, maxProblems)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("... and %d more problems", maxProblems)) {
		t.Errorf("no count of the rest:\n%v", err)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "config.json")
	if err := os.WriteFile(good, []byte(goldenConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(good); err != nil {
		t.Fatal(err)
	}

	bad := filepath.Join(dir, "bad.json")
	d := parseDoc(t, goldenConfig).set("coreThing.ggMqttPort", 70000)
	if err := os.WriteFile(bad, d.bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(bad)
	want := "config: " + bad + ": coreThing.ggMqttPort: 70000 is not a port (1-65535)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	wantProblem(t, err, "coreThing.ggMqttPort", "not a port")

	_, err = LoadConfig(filepath.Join(dir, "missing.json"))
	if !os.IsNotExist(unwrapAll(err)) || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}

	huge := filepath.Join(dir, "huge.json")
	if err := os.WriteFile(huge, make([]byte, MaxFileSize+100), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(huge); err == nil || !strings.Contains(err.Error(), "4 MiB") {
		t.Errorf("huge file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestConfigMarshalRoundTrip(t *testing.T) {
	for _, in := range []string{goldenConfig, v1Config, minimalConfig} {
		c, err := ParseConfig([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("re-parse of\n%s\n: %v", out, err)
		}
		c.Ignored = nil
		if !reflect.DeepEqual(c, c2) {
			t.Errorf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
		if strings.Contains(string(out), `"caPath": "/`) {
			t.Errorf("caPath not written as a file URI:\n%s", out)
		}
	}
}

func TestPKCS11PinNotPrinted(t *testing.T) {
	c, err := ParseConfig([]byte(v1Config))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(*c.Crypto.PKCS11), fmt.Sprintf("%+v", c.Crypto), fmt.Sprintf("%v", c.Crypto.PKCS11.LogValue())} {
		if strings.Contains(s, "1234") {
			t.Errorf("PIN printed: %s", s)
		}
	}
}
