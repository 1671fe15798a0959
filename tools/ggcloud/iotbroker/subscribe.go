package iotbroker

import (
	"errors"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/internal/mochiext"
)

// subscribeHook checks iot:Subscribe on every filter of a SUBSCRIBE, and
// sends the retained messages a subscription is owed only where
// iot:Receive allows.
//
// mochi asks the same question (OnACLCheck, write false) for a filter
// being subscribed and for a message being delivered, so the filter is
// decided here instead: OnSubscribe replaces a refused filter with one
// mochi finds invalid (SUBACK 0x8F; 0x80 for MQTT 3.1.1), and
// OnPacketEncode turns its MQTT 5 reason code into 0x87, not authorized.
// All three run on the subscriber's read goroutine, in that order.
//
// mochi's own retained replay cannot check iot:Receive (see above); it is
// switched off (Retain Handling 2) and replayRetained does it instead,
// once the SUBACK is out.
type subscribeHook struct {
	mqtt.HookBase
	b *Broker
}

// refusedFilter stands for a refused filter: '#' not at the end makes it
// invalid, so mochi subscribes nothing.
const refusedFilter = "#/ggcloud-refused"

func (h *subscribeHook) ID() string { return "ggcloud-subscribe" }

func (h *subscribeHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSubscribe, mqtt.OnPacketEncode, mqtt.OnPacketProcessed:
		return true
	}
	return false
}

// subscribeState is what one SUBSCRIBE leaves for its SUBACK and its
// retained replay.
type subscribeState struct {
	packetID uint16
	refused  []int                  // indices of refused filters
	owed     []packets.Subscription // filters owed their retained messages
}

func (h *subscribeHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	s := h.b.sessionOf(cl)
	filters := make([]packets.Subscription, len(pk.Filters))
	copy(filters, pk.Filters)
	st := &subscribeState{packetID: pk.PacketID}
	for i := range filters {
		f := &filters[i]
		if s == nil || !s.allow(actionSubscribe, h.b.topicFilterARN(f.Filter)) {
			f.Filter = refusedFilter
			st.refused = append(st.refused, i)
			continue
		}
		_, existed := cl.State.Subscriptions.Get(f.Filter)
		if !mqtt.IsSharedFilter(f.Filter) && (f.RetainHandling == 0 || f.RetainHandling == 1 && !existed) {
			owed := *f
			owed.RetainHandling = 0
			st.owed = append(st.owed, owed)
		}
		f.RetainHandling = 2
	}
	if s != nil {
		s.subscribe = st
	}
	pk.Filters = filters
	return pk
}

// OnPacketEncode gives the refused filters of an MQTT 5 SUBACK reason
// code 0x87.
func (h *subscribeHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Suback || cl.Properties.ProtocolVersion < 5 {
		return pk
	}
	s := h.b.sessionOf(cl)
	if s == nil || s.subscribe == nil || s.subscribe.packetID != pk.PacketID || len(s.subscribe.refused) == 0 {
		return pk
	}
	codes := make([]byte, len(pk.ReasonCodes))
	copy(codes, pk.ReasonCodes)
	for _, i := range s.subscribe.refused {
		if i < len(codes) && codes[i] == packets.ErrTopicFilterInvalid.Code {
			codes[i] = packets.ErrNotAuthorized.Code
		}
	}
	pk.ReasonCodes = codes
	return pk
}

// OnPacketProcessed sends the retained messages owed by a SUBSCRIBE once
// mochi has written its SUBACK.
func (h *subscribeHook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, err error) {
	if pk.FixedHeader.Type != packets.Subscribe {
		return
	}
	s := h.b.sessionOf(cl)
	if s == nil || s.subscribe == nil {
		return
	}
	st := s.subscribe
	s.subscribe = nil
	if err != nil || st.packetID != pk.PacketID {
		return
	}
	for _, sub := range st.owed {
		if granted, ok := cl.State.Subscriptions.Get(sub.Filter); ok {
			h.replayRetained(s, cl, granted)
		}
	}
}

// replayRetained sends cl the retained messages matching sub that
// iot:Receive allows, with the retain flag set as MQTT requires.
func (h *subscribeHook) replayRetained(s *session, cl *mqtt.Client, sub packets.Subscription) {
	srv := h.b.srv
	for _, msg := range srv.Topics.Messages(sub.Filter) {
		if !s.allow(actionReceive, h.b.topicARN(msg.TopicName)) {
			continue
		}
		err := mochiext.SendRetained(srv, cl, msg, sub)
		if errors.Is(err, mochiext.ErrInflightFull) {
			h.b.log.Warn("retained message not sent: inflight window full", "client", cl.ID, "topic", msg.TopicName)
			continue
		}
		if err != nil {
			h.b.log.Debug("retained message not sent", "client", cl.ID, "topic", msg.TopicName, "error", err)
			return
		}
	}
}
