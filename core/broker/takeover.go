package broker

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeoverWait bounds how long a new connection waits for the clean
// session it takes over to finish closing.
const takeoverWait = 5 * time.Second

// takeoverHook makes a connection that takes over a live clean session
// wait until the old connection has finished closing.
//
// mochi (v2.7) disconnects the old client first and marks it taken over
// only afterwards. In between, the old connection's own teardown can see a
// session that is not taken over and clean it up: it unsubscribes the
// client ID and deletes it from the client list, after the new client was
// added under the same ID. The new client is then connected and subscribed
// but never sent anything. A device whose old TCP connection still looks
// alive when it reconnects (a common case after a network change) would go
// deaf. Closing the old connection here and waiting for its teardown, before
// mochi looks for a session to inherit, leaves nothing to race with.
// Persistent sessions are not affected: their teardown cleans nothing up.
type takeoverHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *takeoverHook) ID() string { return "ggcore-takeover" }

func (h *takeoverHook) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

// OnSessionEstablish runs before mochi inherits the old session.
func (h *takeoverHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	old, ok := h.b.srv.Clients.Get(cl.ID)
	if !ok || old == cl || !cleanSession(old) {
		return
	}
	_ = h.b.srv.DisconnectClient(old, packets.ErrSessionTakenOver)
	deadline := time.Now().Add(takeoverWait)
	pause := 100 * time.Microsecond
	for time.Now().Before(deadline) {
		if cur, ok := h.b.srv.Clients.Get(cl.ID); !ok || cur != old {
			return
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
	h.b.log.Warn("session takeover: the old connection did not close in time", "client", cl.ID, "waited", takeoverWait)
}

// cleanSession reports whether cl's session ends with its connection
// (MQTT 3.1.1 clean session, or MQTT 5 with no session expiry).
func cleanSession(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}
