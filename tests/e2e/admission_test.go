package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// Cases 3–6: only a registered certificate, from the identity CA, still
// valid, presented with its thing's name as client ID, may connect.
func TestDeviceAdmission(t *testing.T) {
	t.Parallel()
	// dev5 and dev6 are the MQTT 3.1.1 twins of the admitted dev1 and
	// dev4: no admitted client ID connects twice.
	f := newFleet(t, "dev1", "dev2", "dev3", "dev4", "dev5", "dev6")
	identityCA := loadAuthority(t, f.rootCA(), f.rootCAKey())
	now := time.Now()
	// dev3 is registered with an expired certificate from the right CA, so
	// that expiry is the only thing wrong with it.
	expired := identityCA.issue(t, "dev3", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	f.registerCertificate(t, "dev3", expired.der)
	// dev4 is registered with a valid certificate made the same way: the
	// control showing that the test's certificates are otherwise accepted.
	fresh := identityCA.issue(t, "dev4", now.Add(-time.Hour), now.Add(24*time.Hour))
	f.registerCertificate(t, "dev4", fresh.der)
	fresh311 := identityCA.issue(t, "dev6", now.Add(-time.Hour), now.Add(24*time.Hour))
	f.registerCertificate(t, "dev6", fresh311.der)
	// Right CA, valid, but registered nowhere.
	unregistered := identityCA.issue(t, "dev1", now.Add(-time.Hour), now.Add(24*time.Hour))
	// Another CA altogether.
	foreign := newAuthority(t, "other CA").issue(t, "dev1", now.Add(-time.Hour), now.Add(24*time.Hour))
	startCore(t, f)

	type admissionCase struct {
		name     string
		id       identity
		clientID string
		// admitted: CONNACK 0x00. Otherwise refused: with MQTT 5 CONNACK
		// wantCode when wantCode != 0, else either a failed handshake, a
		// closed connection or a CONNACK >= 0x80.
		admitted bool
		wantCode byte
	}
	// admitted are the cases that connect: the registered device and the
	// one with a test-made registered certificate.
	admitted := func(registered string, made identity, madeThing string) []admissionCase {
		return []admissionCase{
			{name: "registered device", id: f.identity(registered), clientID: registered, admitted: true},
			{name: "test-made registered certificate", id: made, clientID: madeThing, admitted: true},
		}
	}
	refused := []admissionCase{
		{name: "client ID of another thing", id: f.identity("dev1"), clientID: "dev2", wantCode: 0x87},
		{name: "unknown client ID", id: f.identity("dev1"), clientID: "intruder", wantCode: 0x87},
		{name: "empty client ID", id: f.identity("dev1"), clientID: "", wantCode: 0x87},
		{name: "certificate from another CA", id: foreign, clientID: "dev1"},
		{name: "unregistered certificate from the identity CA", id: unregistered, clientID: "dev1", wantCode: 0x87},
		{name: "expired registered certificate", id: expired, clientID: "dev3"},
	}

	t.Run("mqtt5", func(t *testing.T) {
		for _, c := range append(admitted("dev1", fresh, "dev4"), refused...) {
			t.Run(c.name, func(t *testing.T) {
				_, ca, err := f.dial5(t, c.id.tlsCertificate(t), c.clientID, nil)
				switch {
				case c.admitted:
					if err != nil {
						t.Fatalf("refused: %v (CONNACK %s); want admitted", err, mqtttest.ConnackCode(ca))
					}
				case err == nil:
					t.Fatalf("admitted (CONNACK %s); want refused", mqtttest.ConnackCode(ca))
				case c.wantCode != 0 && (ca == nil || ca.ReasonCode != c.wantCode):
					t.Fatalf("refused with CONNACK %s (%v); want CONNACK 0x%02x", mqtttest.ConnackCode(ca), err, c.wantCode)
				case ca != nil && ca.ReasonCode < 0x80:
					t.Fatalf("CONNACK %s with error %v; want a refusal", mqtttest.ConnackCode(ca), err)
				default:
					t.Logf("refused: %v (CONNACK %s)", err, mqtttest.ConnackCode(ca))
				}
			})
		}
	})

	t.Run("mqtt311", func(t *testing.T) {
		for _, c := range append(admitted("dev5", fresh311, "dev6"), refused...) {
			if c.clientID == "" {
				continue // mosquitto_pub makes up a client ID for -i ""
			}
			t.Run(c.name, func(t *testing.T) {
				code, out := f.mosqPub(t, c.id, c.clientID, "probe/"+c.clientID, "probe", 1)
				switch {
				case c.admitted && code != 0:
					t.Errorf("mosquitto_pub exit %d; want 0 (admitted):\n%s", code, out)
				case !c.admitted && code == 0:
					t.Errorf("mosquitto_pub exit 0; want non-zero (refused):\n%s", out)
				case !c.admitted && c.wantCode != 0 && !strings.Contains(out, "not authori"):
					t.Errorf("mosquitto_pub did not report a refusal by CONNACK (not authorised):\n%s", out)
				}
			})
		}
	})
}
