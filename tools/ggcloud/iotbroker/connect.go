package iotbroker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/tools/ggcloud/policy"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// connectHook admits a CONNECT when the client certificate is registered
// and within its validity, its policies allow iot:Connect on the client
// ID, and iot:Publish on the will topic if there is a will. The policies
// are read from the store at every CONNECT.
type connectHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *connectHook) ID() string { return "ggcloud-connect" }

func (h *connectHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablish,
		mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// OnConnect refuses the connection with CONNACK "not authorized" (MQTT 5
// 0x87, MQTT 3.1.1 0x05) before any session state is touched, or "server
// unavailable" (0x88, 0x03) when the store cannot be read.
func (h *connectHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	b := h.b
	s, code := h.admit(cl)
	if code == packets.CodeSuccess {
		b.connecting.Store(cl, s)
		return nil
	}
	if code == packets.ErrNotAuthorized && cl.Properties.ProtocolVersion < 5 {
		// mochi maps only "bad user name or password" to 3.1.1's 0x05.
		_ = cl.WritePacket(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Connack},
			ReasonCode:  packets.Err3NotAuthorized.Code,
		})
	} else {
		_ = b.srv.SendConnack(cl, code, false, nil)
	}
	return code
}

// admit checks a CONNECT and returns the client's new session.
func (h *connectHook) admit(cl *mqtt.Client) (*session, packets.Code) {
	b := h.b
	resource := b.clientARN(cl.ID)
	refuse := func(thing, action, resource, reason string) (*session, packets.Code) {
		b.log.Info("mqtt request refused", "client", cl.ID, "thing", thing, "remote", cl.Net.Remote,
			"action", action, "resource", resource, "reason", reason)
		return nil, packets.ErrNotAuthorized
	}
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok || len(tc.ConnectionState().PeerCertificates) == 0 {
		return refuse("", actionConnect, resource, "no client certificate")
	}
	cert := tc.ConnectionState().PeerCertificates[0]
	id := pki.CertificateID(cert.Raw)
	if now := time.Now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return refuse("", actionConnect, resource, fmt.Sprintf("certificate %s is valid from %s to %s only",
			id, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	caller, err := b.store.CallerOf(id)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("", actionConnect, resource, fmt.Sprintf("certificate %s is not registered", id))
	}
	if err != nil {
		b.log.Error("mqtt connection refused: state store unavailable", "client", cl.ID, "certificate", id, "error", err)
		return nil, packets.ErrServerUnavailable
	}
	if !b.enforce {
		return newSession(b, cl, id, caller), packets.CodeSuccess
	}
	thing := caller.Thing.Name
	decide := func(action, resource string) policy.Decision {
		return policy.Decide(caller.Policies, policy.Request{Action: action, Resource: resource, ThingName: thing})
	}
	if d := decide(actionConnect, resource); !d.Allowed {
		return refuse(thing, actionConnect, resource, d.Reason)
	}
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 {
		will := b.topicARN(cl.Properties.Will.TopicName)
		if d := decide(actionPublish, will); !d.Allowed {
			return refuse(thing, actionPublish, will, "will message: "+d.Reason)
		}
	}
	return newSession(b, cl, id, caller), packets.CodeSuccess
}

// OnConnectAuthenticate admits what OnConnect let through: the client is
// authenticated by its certificate, not a username or password.
func (h *connectHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnSessionEstablish makes the new connection's session the client ID's,
// replacing that of a connection it takes over.
func (h *connectHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if v, ok := h.b.connecting.LoadAndDelete(cl); ok {
		h.b.sessions.Store(cl.ID, v.(*session))
	}
}

// OnDisconnect forgets a session that mochi forgets too.
func (h *connectHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.b.connecting.Delete(cl)
	if expire {
		h.b.forget(cl)
	}
	h.b.log.Debug("client disconnected", "client", cl.ID, "reason", err, "session_expired", expire)
}

// OnClientExpired forgets an offline session that has expired.
func (h *connectHook) OnClientExpired(cl *mqtt.Client) { h.b.forget(cl) }
