package e2e

import (
	"os"
	"testing"

	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// Case 11: SIGHUP applies a new group.json; a malformed one is refused and
// the running table keeps routing.
func TestReloadGroup(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1", "dev2")
	f.setRoutes(t, route{"dev1", "a/#", "dev2"})
	core := startCore(t, f)
	dev1, dev2 := f.connect5(t, "dev1"), f.connect5(t, "dev2")
	dev2.MustSubscribe(t, 1, "#") // granted through a/#; b/ is not routed yet

	dev1.Publish(t, "b/x", "b before reload", 1, false)
	dev1.MustPublish(t, "a/x", "control 1", 1, false)
	mqtttest.AssertPayloads(t, "dev2", dev2.ReceiveUntil(t, "control 1"), "control 1")

	f.setRoutes(t, route{"dev1", "a/#", "dev2"}, route{"dev1", "b/#", "dev2"})
	core.reload(t, "group reloaded")
	dev1.MustPublish(t, "b/x", "b after reload", 1, false)
	mqtttest.AssertPayloads(t, "dev2", dev2.ReceiveUntil(t, "b after reload"), "b after reload")

	good, err := os.ReadFile(f.groupPath())
	if err != nil {
		t.Fatal(err)
	}
	malformed := []struct {
		name  string
		write func(t *testing.T)
	}{
		{"not JSON", func(t *testing.T) {
			if err := os.WriteFile(f.groupPath(), []byte(`{"GroupId": "g1", "Subscriptions": [`), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"invalid subject", func(t *testing.T) {
			f.setRoutes(t, route{"dev1", "a/#/b", "dev2"})
		}},
	}
	for _, m := range malformed {
		t.Run(m.name, func(t *testing.T) {
			if err := os.WriteFile(f.groupPath(), good, 0o600); err != nil {
				t.Fatal(err)
			}
			m.write(t)
			core.reload(t, "group reload refused")
			// The last good table (a/# and b/#) still routes.
			dev1.MustPublish(t, "a/x", "a after refused "+m.name, 1, false)
			dev1.MustPublish(t, "b/x", "b after refused "+m.name, 1, false)
			mqtttest.AssertPayloads(t, "dev2", dev2.ReceiveUntil(t, "b after refused "+m.name),
				"a after refused "+m.name, "b after refused "+m.name)
		})
	}
}
