// Package config reads and checks ggcore's two input files: config.json
// (the Greengrass v1 core configuration, plus ggcore's own "ggcore"
// object) and group.json (the deployed group, in v1 API field names).
//
// Every problem is reported as "<json.path>: <reason>", all problems of a
// file at once (joined with errors.Join). Fields of real v1 configs that
// ggcore does not implement are accepted and listed in Config.Ignored;
// any other unknown field is an error. The package does no I/O beyond
// reading the file in LoadConfig and LoadGroup.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// Defaults of config.json's optional settings.
const (
	DefaultIotMqttPort = 8883 // coreThing.iotMqttPort (v1)
	DefaultGGHttpPort  = 8443 // coreThing.ggHttpPort (v1)
	DefaultGGMqttPort  = 8883 // coreThing.ggMqttPort (v1)
	DefaultKeepAlive   = 600  // coreThing.keepAlive, seconds (v1)
	// DefaultGGDaemonPort is coreThing.ggDaemonPort's default (v1).
	DefaultGGDaemonPort = 8000
	DefaultTLSProfile   = "strict"
)

// Limits of coreThing.keepAlive, in seconds (v1's range).
const (
	MinKeepAlive = 30
	MaxKeepAlive = 1200
)

// Config is a checked config.json. Defaults are filled in. It marshals
// back to config.json form (paths as file:// URIs).
type Config struct {
	CoreThing      CoreThing `json:"coreThing"`
	Crypto         Crypto    `json:"crypto"`
	WriteDirectory string    `json:"writeDirectory"` // absolute, cleaned
	GGCore         GGCore    `json:"ggcore"`

	// Ignored lists, in file order, the JSON paths of v1 fields that
	// ggcore accepts but does not use (such as "runtime" or
	// "coreThing.certPath"), for the caller to log.
	Ignored []string `json:"-"`
}

// CoreThing is config.json's "coreThing" object.
type CoreThing struct {
	ThingArn    string `json:"thingArn"`          // arn:aws:iot:REGION:ACCOUNT:thing/NAME
	ThingName   string `json:"-"`                 // NAME, from ThingArn
	IotHost     string `json:"iotHost,omitempty"` // upstream MQTT broker (AWS IoT Core)
	IotMqttPort int    `json:"iotMqttPort"`       // default 8883
	GGHost      string `json:"ggHost,omitempty"`  // control plane (ggcloud)
	GGHttpPort  int    `json:"ggHttpPort"`        // default 8443
	GGMqttPort  int    `json:"ggMqttPort"`        // local MQTT server, default 8883
	KeepAlive   int    `json:"keepAlive"`         // upstream MQTT keep-alive in seconds, default 600
	// GGDaemonPort is the port of the local functions' IPC on 127.0.0.1;
	// 0 means DefaultGGDaemonPort.
	GGDaemonPort int `json:"ggDaemonPort,omitempty"`
	// MQTTMaxConnectionRetryInterval caps the wait between upstream
	// connection attempts, in seconds; default 60.
	MQTTMaxConnectionRetryInterval int `json:"mqttMaxConnectionRetryInterval,omitempty"`
}

// Crypto is config.json's "crypto" object.
type Crypto struct {
	// CAPath is the file named by the caPath file:// URI: the CA that
	// device (and core) certificates chain to.
	CAPath     string     `json:"caPath"`
	Principals Principals `json:"principals"`
	// PKCS11 is crypto.PKCS11, nil when absent.
	PKCS11 *PKCS11 `json:"PKCS11,omitempty"`
}

// Principals is crypto.principals: the core's keys.
type Principals struct {
	IoTCertificate IoTCertificate `json:"IoTCertificate"`
	// MQTTServerCertificate.PrivateKey is "" when the core is to create
	// its own MQTT server key.
	MQTTServerCertificate Principal `json:"MQTTServerCertificate,omitzero"`
	// SecretsManager.PrivateKey is "" when absent; v1 then uses the
	// IoTCertificate key (see Config.SecretsKey).
	SecretsManager Principal `json:"SecretsManager,omitzero"`
}

// IoTCertificate is the core's identity towards the cloud.
type IoTCertificate struct {
	// PrivateKey is the key reference as written (see ParseKeyRef).
	PrivateKey string `json:"privateKeyPath"`
	// CertificatePath is the file named by the certificatePath URI.
	CertificatePath string `json:"certificatePath"`
}

// Principal is a principal that is only a key.
type Principal struct {
	// PrivateKey is the key reference as written (see ParseKeyRef).
	PrivateKey string `json:"privateKeyPath,omitempty"`
}

// PKCS11 is crypto.PKCS11: the token that pkcs11: key references use
// unless the reference names its own module, token and PIN.
type PKCS11 struct {
	P11Provider string `json:"P11Provider"`           // absolute path of the PKCS#11 module
	SlotLabel   string `json:"slotLabel,omitempty"`   // token label
	SlotUserPin string `json:"slotUserPin,omitempty"` // user PIN
}

// String describes p without its PIN.
func (p PKCS11) String() string {
	pin := ""
	if p.SlotUserPin != "" {
		pin = "REDACTED"
	}
	return fmt.Sprintf("{P11Provider:%s SlotLabel:%s SlotUserPin:%s}", p.P11Provider, p.SlotLabel, pin)
}

// LogValue logs p without its PIN.
func (p PKCS11) LogValue() slog.Value {
	return slog.GroupValue(slog.String("P11Provider", p.P11Provider), slog.String("slotLabel", p.SlotLabel),
		slog.Bool("slotUserPin", p.SlotUserPin != ""))
}

// GGCore is config.json's "ggcore" object: ggcore's own settings (v1
// ignores it).
type GGCore struct {
	TLSProfile string `json:"tlsProfile"` // "strict" (default) or "compat"
	TPM        TPM    `json:"tpm"`
	// LocalMQTTBind is the IP address the local MQTT server listens on;
	// "" means all interfaces.
	LocalMQTTBind string `json:"localMqttBind,omitempty"`
	// DisconnectOnRotation restores v1's behaviour of disconnecting every
	// client when the MQTT server certificate is rotated.
	DisconnectOnRotation bool `json:"disconnectOnRotation,omitempty"`
	// Connectivity, when set, is what the core reports to the control
	// plane as its endpoints (HOST:PORT), instead of its own addresses
	// and MQTT port: for devices that reach it through NAT or a port
	// forward, like v1's manual connectivity information.
	Connectivity []string `json:"connectivity,omitempty"`
	// DeploymentPollSeconds is how often the core asks the control plane
	// for a new deployment: 1 to 86400, default 30.
	DeploymentPollSeconds int `json:"deploymentPollSeconds,omitempty"`
	// Persistence bounds the store of persistent sessions, their queued
	// messages and the retained messages (<writeDirectory>/broker/sessions.db).
	Persistence Persistence `json:"persistence,omitzero"`
	// Time is how ggcore keeps the system clock right (ggcore.time).
	Time Time `json:"time,omitzero"`
	// SubscriberQueue bounds the local broker's per-subscriber queues
	// (ggcore.subscriberQueue, see queue.go).
	SubscriberQueue SubscriberQueue `json:"subscriberQueue,omitzero"`
	// OTA is where image updates go (ggcore.ota, see ota.go).
	OTA OTA `json:"ota,omitzero"`
}

// Time is ggcore.time. Absent, ggcore leaves the clock alone (a host's
// own time service keeps it); a gateway without a battery-backed clock
// sets setClock (the firmware image's data disk does).
type Time struct {
	// SetClock lets ggcore step the system clock (it needs root or
	// CAP_SYS_TIME) to what the NTP servers or, when none answers, the
	// control plane's HTTPS Date say. Without it ggcore only measures the
	// offset against the NTP servers and logs it.
	SetClock bool `json:"setClock,omitempty"`
	// NTPServers are asked in order: "host" or "host:port" (port 123),
	// such as "pool.ntp.org". None by default: a gateway with a control
	// plane takes its time from it.
	NTPServers []string `json:"ntpServers,omitempty"`
}

// Persistence is ggcore.persistence. Zero values mean the broker's
// defaults (64 MiB, 100,000 messages).
type Persistence struct {
	// Disabled keeps sessions and retained messages in memory only: a
	// restart loses them.
	Disabled bool `json:"disabled,omitempty"`
	// MaxBytes bounds the stored messages' records: 1 MiB to 1 TiB.
	MaxBytes int64 `json:"maxBytes,omitempty"`
	// MaxMessages bounds how many messages are stored: 1 to 100,000,000.
	MaxMessages int64 `json:"maxMessages,omitempty"`
}

// TPM is ggcore.tpm.
type TPM struct {
	// Device is a TPM device node (default /dev/tpmrm0), unix:///path of
	// a socket, or tcp://HOST:PORT (swtpm); see keyspec.ParseTPMDevice.
	Device string `json:"device"`
}

// GroupPath is where the deployed group lives:
// <writeDirectory>/deployment/group/group.json.
func (c *Config) GroupPath() string {
	return filepath.Join(c.WriteDirectory, "deployment", "group", "group.json")
}

// ServerCertPath is the MQTT server certificate the core serves:
// <writeDirectory>/dcm/mqtt-server.cert.pem.
func (c *Config) ServerCertPath() string {
	return filepath.Join(c.WriteDirectory, "dcm", "mqtt-server.cert.pem")
}

// SecretsKey is the key reference of the SecretsManager principal: its
// own key if configured, otherwise the IoTCertificate key (as v1 does).
func (c *Config) SecretsKey() string {
	if k := c.Crypto.Principals.SecretsManager.PrivateKey; k != "" {
		return k
	}
	return c.Crypto.Principals.IoTCertificate.PrivateKey
}

// MarshalJSON writes c in config.json form, paths as file:// URIs.
func (c Crypto) MarshalJSON() ([]byte, error) {
	type plain Crypto
	return json.Marshal(struct {
		CAPath string `json:"caPath"`
		plain
	}{fileURI(c.CAPath), plain(c)})
}

// MarshalJSON writes c in config.json form, the certificate path as a
// file:// URI.
func (c IoTCertificate) MarshalJSON() ([]byte, error) {
	type plain IoTCertificate
	return json.Marshal(struct {
		CertificatePath string `json:"certificatePath"`
		plain
	}{fileURI(c.CertificatePath), plain(c)})
}

// LoadConfig reads and checks the config.json at path.
func LoadConfig(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return cfg, nil
}

// readFile reads at most MaxFileSize+1 bytes of path, so that an oversized
// file is refused by the parser without being read whole.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	defer f.Close()
	// Read into a buffer of the file's size: io.ReadAll grows its buffer
	// step by step, twice a big group.json's size in garbage.
	var buf bytes.Buffer
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() <= MaxFileSize {
		buf.Grow(int(fi.Size()) + bytes.MinRead)
	}
	_, err = buf.ReadFrom(io.LimitReader(f, MaxFileSize+1))
	data := buf.Bytes()
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config: %s: larger than the %d bytes (%d MiB) ggcore reads", path, MaxFileSize, MaxFileSize>>20)
	}
	return data, nil
}

// ParseConfig checks a config.json document and returns it with defaults
// filled in, or every problem found.
func ParseConfig(data []byte) (*Config, error) {
	data, err := document(data)
	if err != nil {
		return nil, err
	}
	c := &Config{
		CoreThing: CoreThing{IotMqttPort: DefaultIotMqttPort, GGHttpPort: DefaultGGHttpPort, MQTTMaxConnectionRetryInterval: 60,
			GGMqttPort: DefaultGGMqttPort, KeepAlive: DefaultKeepAlive},
		GGCore: GGCore{TLSProfile: DefaultTLSProfile, TPM: TPM{Device: keyspec.DefaultTPMDevice}, DeploymentPollSeconds: 30},
	}
	w := &walker{}
	var pkcs11Keys []keyUse
	present := w.object("", data, []rule{
		{"coreThing", func(p string, v json.RawMessage) { w.coreThing(p, v, &c.CoreThing) }},
		{"crypto", func(p string, v json.RawMessage) { pkcs11Keys = w.crypto(p, v, &c.Crypto) }},
		{"writeDirectory", func(p string, v json.RawMessage) {
			if w.str(p, v, &c.WriteDirectory) {
				c.WriteDirectory = w.absDir(p, c.WriteDirectory)
			}
		}},
		{"ggcore", func(p string, v json.RawMessage) { w.ggcore(p, v, &c.GGCore) }},
		ignore("runtime"), ignore("managedRespawn"), ignore("pidFileDirectory"),
		ignore("mqttMaxConnectionRetryInterval"), ignore("system"),
	})
	if present != nil {
		if !present["coreThing"] {
			w.fail("coreThing", "required: an object with at least thingArn (%s)", thingARNForm)
		}
		if !present["crypto"] {
			w.fail("crypto", "required: an object with caPath and principals.IoTCertificate "+
				"(the pre-v1.7 coreThing.caPath/certPath/keyPath are not read)")
		}
		if !present["writeDirectory"] {
			w.fail("writeDirectory", "required: the absolute directory where ggcore keeps group.json and its state, such as /greengrass/ggc/var")
		}
	}
	w.checkPKCS11(c.Crypto.PKCS11, pkcs11Keys)
	if err := w.err(); err != nil {
		return nil, err
	}
	c.Ignored = w.ignored
	return c, nil
}

func (w *walker) coreThing(path string, raw json.RawMessage, ct *CoreThing) {
	port := func(dst *int) func(string, json.RawMessage) {
		return func(p string, v json.RawMessage) { w.intRange(p, v, 1, 65535, "a port (1-65535)", dst) }
	}
	host := func(dst *string) func(string, json.RawMessage) {
		return func(p string, v json.RawMessage) {
			if w.str(p, v, dst) {
				if err := checkHost(*dst); err != nil {
					w.fail(p, "%v", err)
				}
			}
		}
	}
	present := w.object(path, raw, []rule{
		{"thingArn", func(p string, v json.RawMessage) {
			if w.str(p, v, &ct.ThingArn) {
				name, err := ThingName(ct.ThingArn)
				if err != nil {
					w.fail(p, "%v", err)
				}
				ct.ThingName = name
			}
		}},
		{"iotHost", host(&ct.IotHost)},
		{"iotMqttPort", port(&ct.IotMqttPort)},
		{"ggHost", host(&ct.GGHost)},
		{"ggHttpPort", port(&ct.GGHttpPort)},
		{"ggMqttPort", port(&ct.GGMqttPort)},
		{"keepAlive", func(p string, v json.RawMessage) {
			w.intRange(p, v, MinKeepAlive, MaxKeepAlive, "a keep-alive period in seconds (30-1200)", &ct.KeepAlive)
		}},
		ignore("caPath"), ignore("certPath"), ignore("keyPath"), ignore("iotHttpPort"),
		ignore("networkProxy"), ignore("mqttOperationTimeout"),
		{"ggDaemonPort", func(p string, v json.RawMessage) {
			w.intRange(p, v, 1024, 65535, "a port from 1024 to 65535", &ct.GGDaemonPort)
		}},
		ignore("systemComponentAuthTimeout"),
		{"mqttMaxConnectionRetryInterval", func(p string, v json.RawMessage) {
			w.intRange(p, v, 1, 86400, "a number of seconds from 1 to 86400", &ct.MQTTMaxConnectionRetryInterval)
		}},
	})
	if present != nil && !present["thingArn"] {
		w.fail(join(path, "thingArn"), "required: the core's thing ARN, %s", thingARNForm)
	}
}

// keyUse is a pkcs11: key reference found at a JSON path.
type keyUse struct {
	path string
	ref  KeyRef
}

// crypto walks the crypto object and returns the pkcs11 key references.
func (w *walker) crypto(path string, raw json.RawMessage, c *Crypto) []keyUse {
	var uses []keyUse
	key := func(dst *string) func(string, json.RawMessage) {
		return func(p string, v json.RawMessage) {
			if !w.str(p, v, dst) {
				return
			}
			ref, err := ParseKeyRef(*dst)
			if err != nil {
				w.fail(p, "%v", err)
				return
			}
			if ref.Scheme == SchemePKCS11 {
				uses = append(uses, keyUse{p, ref})
			}
		}
	}
	file := func(dst *string, what string) func(string, json.RawMessage) {
		return func(p string, v json.RawMessage) {
			if !w.str(p, v, dst) {
				return
			}
			f, err := parseFileURI(*dst)
			if err != nil {
				w.fail(p, "%v (%s is read from a file)", err, what)
			}
			*dst = f
		}
	}
	principal := func(dst *Principal) func(string, json.RawMessage) {
		return func(p string, v json.RawMessage) {
			w.object(p, v, []rule{{"privateKeyPath", key(&dst.PrivateKey)}})
		}
	}
	present := w.object(path, raw, []rule{
		{"caPath", file(&c.CAPath, "the CA certificate")},
		{"principals", func(p string, v json.RawMessage) {
			ps := &c.Principals
			present := w.object(p, v, []rule{
				{"IoTCertificate", func(p string, v json.RawMessage) {
					present := w.object(p, v, []rule{
						{"privateKeyPath", key(&ps.IoTCertificate.PrivateKey)},
						{"certificatePath", file(&ps.IoTCertificate.CertificatePath, "the certificate")},
					})
					if present == nil {
						return
					}
					if !present["privateKeyPath"] {
						w.fail(join(p, "privateKeyPath"), "required: the core's private key, %s", keyRefForms)
					}
					if !present["certificatePath"] {
						w.fail(join(p, "certificatePath"), "required: the core's certificate, file:///absolute/path/to/core.cert.pem")
					}
				}},
				{"MQTTServerCertificate", principal(&ps.MQTTServerCertificate)},
				{"SecretsManager", principal(&ps.SecretsManager)},
			})
			if present != nil && !present["IoTCertificate"] {
				w.fail(join(p, "IoTCertificate"), "required: an object with privateKeyPath and certificatePath")
			}
		}},
		{"PKCS11", func(p string, v json.RawMessage) {
			c.PKCS11 = &PKCS11{}
			present := w.object(p, v, []rule{
				{"P11Provider", func(p string, v json.RawMessage) {
					if w.str(p, v, &c.PKCS11.P11Provider) && !filepath.IsAbs(c.PKCS11.P11Provider) {
						w.fail(p, "%s is not an absolute path: want the path of the PKCS#11 module, such as /usr/lib/softhsm/libsofthsm2.so",
							quote(c.PKCS11.P11Provider))
					}
				}},
				{"slotLabel", func(p string, v json.RawMessage) {
					if w.str(p, v, &c.PKCS11.SlotLabel) && len(c.PKCS11.SlotLabel) > 32 {
						w.fail(p, "%d bytes: a PKCS#11 token label has at most 32", len(c.PKCS11.SlotLabel))
					}
				}},
				{"slotUserPin", func(p string, v json.RawMessage) { w.str(p, v, &c.PKCS11.SlotUserPin) }},
				ignore("OpenSSLEngine"),
			})
			if present != nil && !present["P11Provider"] {
				w.fail(join(p, "P11Provider"), "required: the absolute path of the PKCS#11 module")
			}
		}},
	})
	if present != nil {
		if !present["caPath"] {
			w.fail(join(path, "caPath"), "required: the CA certificate device certificates chain to, file:///absolute/path/to/root.ca.pem")
		}
		if !present["principals"] {
			w.fail(join(path, "principals"), "required: an object with IoTCertificate")
		}
	}
	return uses
}

// checkPKCS11 checks that every pkcs11: key can find its module, token and
// PIN, from the URI or from crypto.PKCS11.
func (w *walker) checkPKCS11(p *PKCS11, uses []keyUse) {
	if p == nil {
		p = &PKCS11{}
	}
	for _, u := range uses {
		a := u.ref.PKCS11
		if _, ok := a["module-path"]; !ok && p.P11Provider == "" {
			w.fail(u.path, "a pkcs11: key needs a module: set crypto.PKCS11.P11Provider or add ?module-path=/path/to/module.so")
		}
		if _, ok := a["token"]; !ok && p.SlotLabel == "" {
			w.fail(u.path, "a pkcs11: key needs a token: set crypto.PKCS11.slotLabel or add ;token=LABEL")
		}
		_, value := a["pin-value"]
		_, source := a["pin-source"]
		if !value && !source && p.SlotUserPin == "" {
			w.fail(u.path, "a pkcs11: key needs a PIN: set crypto.PKCS11.slotUserPin or add ?pin-source=file:///path/to/pin")
		}
	}
}

func (w *walker) ggcore(path string, raw json.RawMessage, g *GGCore) {
	w.object(path, raw, []rule{
		{"tlsProfile", func(p string, v json.RawMessage) {
			if w.str(p, v, &g.TLSProfile) && g.TLSProfile != "strict" && g.TLSProfile != "compat" {
				w.fail(p, "%s is not a TLS profile: want \"strict\" (default) or \"compat\"", quote(g.TLSProfile))
			}
		}},
		{"tpm", func(p string, v json.RawMessage) {
			w.object(p, v, []rule{{"device", func(p string, v json.RawMessage) {
				if w.str(p, v, &g.TPM.Device) {
					if _, err := keyspec.ParseTPMDevice(g.TPM.Device); err != nil {
						w.fail(p, "%v", err)
					}
				}
			}}})
		}},
		{"localMqttBind", func(p string, v json.RawMessage) {
			if w.str(p, v, &g.LocalMQTTBind) && g.LocalMQTTBind != "" {
				if _, err := netip.ParseAddr(g.LocalMQTTBind); err != nil {
					w.fail(p, "%s is not an IP address: want one such as 127.0.0.1 or ::1 (host names are not accepted), or \"\" for all interfaces",
						quote(g.LocalMQTTBind))
				}
			}
		}},
		{"disconnectOnRotation", func(p string, v json.RawMessage) { w.boolean(p, v, &g.DisconnectOnRotation) }},
		{"persistence", func(p string, v json.RawMessage) { w.persistence(p, v, &g.Persistence) }},
		{"deploymentPollSeconds", func(p string, v json.RawMessage) {
			w.intRange(p, v, 1, 86400, "a number of seconds from 1 to 86400", &g.DeploymentPollSeconds)
		}},
		{"time", func(p string, v json.RawMessage) { w.time(p, v, &g.Time) }},
		{"subscriberQueue", func(p string, v json.RawMessage) { w.subscriberQueue(p, v, &g.SubscriberQueue) }},
		{"ota", func(p string, v json.RawMessage) { w.ota(p, v, &g.OTA) }},
		{"connectivity", func(p string, v json.RawMessage) {
			if string(compact(v)) == "[]" {
				w.fail(p, "empty: want at least one HOST:PORT, or leave it out to report the core's own addresses")
				return
			}
			w.array(p, v, func(p string, v json.RawMessage) {
				var hp string
				if !w.str(p, v, &hp) {
					return
				}
				host, port, err := net.SplitHostPort(hp)
				if err == nil {
					err = checkHost(host)
				}
				if n, perr := strconv.Atoi(port); err == nil && (perr != nil || n < 1 || n > 65535 || port[0] < '0' || port[0] > '9') {
					err = fmt.Errorf("port %q is not 1-65535", port)
				}
				if err != nil {
					w.fail(p, "%s: want HOST:PORT, such as 192.0.2.10:8883 (%v)", quote(hp), err)
					return
				}
				g.Connectivity = append(g.Connectivity, hp)
			})
		}},
	})
}

// time walks ggcore.time.
func (w *walker) time(path string, raw json.RawMessage, t *Time) {
	w.object(path, raw, []rule{
		{"setClock", func(p string, v json.RawMessage) { w.boolean(p, v, &t.SetClock) }},
		{"ntpServers", func(p string, v json.RawMessage) {
			w.array(p, v, func(p string, v json.RawMessage) {
				var s string
				if !w.str(p, v, &s) {
					return
				}
				host, port, split := s, "", false
				if h, pt, err := net.SplitHostPort(s); err == nil {
					host, port, split = h, pt, true
				}
				err := checkHost(host)
				if n, perr := strconv.Atoi(port); err == nil && split && (perr != nil || n < 1 || n > 65535 || port[0] < '0' || port[0] > '9') {
					err = fmt.Errorf("port %q is not 1-65535", port)
				}
				if err != nil {
					w.fail(p, "%s: want an NTP server as HOST or HOST:PORT, such as pool.ntp.org (%v)", quote(s), err)
					return
				}
				t.NTPServers = append(t.NTPServers, s)
			})
		}},
	})
}

// persistence walks ggcore.persistence.
func (w *walker) persistence(path string, raw json.RawMessage, ps *Persistence) {
	bounded := func(lo, hi int64, what string, dst *int64) func(string, json.RawMessage) {
		return func(p string, v json.RawMessage) {
			var n int64
			if !w.integer(p, v, &n) {
				return
			}
			if n < lo || n > hi {
				w.fail(p, "%d is not %s", n, what)
				return
			}
			*dst = n
		}
	}
	w.object(path, raw, []rule{
		{"disabled", func(p string, v json.RawMessage) { w.boolean(p, v, &ps.Disabled) }},
		{"maxBytes", bounded(1<<20, 1<<40, "a number of bytes from 1048576 (1 MiB) to 1099511627776 (1 TiB)", &ps.MaxBytes)},
		{"maxMessages", bounded(1, 100_000_000, "a number of messages from 1 to 100000000", &ps.MaxMessages)},
	})
}

// absDir checks an absolute directory path and returns it cleaned.
func (w *walker) absDir(path, dir string) string {
	switch {
	case strings.Contains(dir, "://"):
		w.fail(path, "%s is a URI: want a plain absolute directory path, such as /greengrass/ggc/var", quote(dir))
	case !filepath.IsAbs(dir):
		w.fail(path, "%s is not an absolute path: want one such as /greengrass/ggc/var", quote(dir))
	case strings.IndexByte(dir, 0) >= 0:
		w.fail(path, "contains a NUL byte")
	default:
		return filepath.Clean(dir)
	}
	return dir
}

// checkHost reports why h is not a host name or IP address.
func checkHost(h string) error {
	if h == "" {
		return fmt.Errorf("empty: want a host name or IP address")
	}
	if strings.Contains(h, "://") {
		return fmt.Errorf("%s has a scheme: want a host name or IP address only", quote(h))
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return fmt.Errorf("%s has a port: want a host name or IP address only (ports are separate settings)", quote(h))
	}
	if len(h) > 253 {
		return fmt.Errorf("%s is longer than a host name can be (253)", quote(h))
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%s is not a host name or IP address", quote(h))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%s is not a host name or IP address (character %q)", quote(h), c)
			}
		}
	}
	return nil
}
