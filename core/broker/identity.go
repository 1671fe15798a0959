package broker

import (
	"crypto/tls"
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/core/pki"
)

// identityHook admits a connection only when its client certificate (already
// verified against crypto.caPath by TLS) is registered to a device of the
// group and the MQTT client ID is that device's thing name. It runs on
// every CONNECT, resumed TLS session or not, so a device removed from the
// group cannot come back with a cached session.
type identityHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *identityHook) ID() string { return "ggcore-identity" }

func (h *identityHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnConnect refuses the connection with CONNACK "not authorized" (0x87;
// 0x05 for MQTT 3.1.1) before any session state is touched.
func (h *identityHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	reason := h.check(cl)
	if reason == "" {
		return nil
	}
	h.b.refused.Add(1)
	h.b.log.Warn("connection refused", "remote", cl.Net.Remote, "client", cl.ID, "reason", reason)
	if cl.Properties.ProtocolVersion < 5 {
		// mochi maps no v5 code to 3.1.1's "not authorized" (0x05).
		_ = cl.WritePacket(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Connack},
			ReasonCode:  packets.Err3NotAuthorized.Code,
		})
	} else {
		_ = h.b.srv.SendConnack(cl, packets.ErrNotAuthorized, false, nil)
	}
	return packets.ErrNotAuthorized
}

func (h *identityHook) check(cl *mqtt.Client) string {
	id := certificateID(cl)
	if id == "" {
		return "no client certificate"
	}
	snap := h.b.snap.Load()
	t := snap.byCert[id]
	if t == nil {
		return fmt.Sprintf("certificate %s is not registered to a device of group %s", id, snap.id)
	}
	if cl.ID != t.Name {
		return fmt.Sprintf("client ID %q is not the thing name %q of its certificate", cl.ID, t.Name)
	}
	return ""
}

// OnSessionEstablished checks again once the client is registered: a group
// swapped between OnConnect and registration (SetGroup walks only
// registered clients) must not leave a removed device connected.
func (h *identityHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if reason := h.check(cl); reason != "" {
		h.b.refused.Add(1)
		h.b.log.Warn("connection closed: group changed while connecting", "client", cl.ID, "reason", reason)
		_ = h.b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
}

// OnConnectAuthenticate admits what OnConnect let through: authentication
// is the certificate, not a username or password.
func (h *identityHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *identityHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.b.log.Debug("client disconnected", "client", cl.ID, "reason", err, "session_expired", expire)
}

// certificateID returns the AWS certificate ID of the client's TLS
// certificate, or "" when there is none.
func certificateID(cl *mqtt.Client) string {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return ""
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return ""
	}
	return pki.CertificateID(certs[0].Raw)
}
