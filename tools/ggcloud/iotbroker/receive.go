package iotbroker

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// receiveHook checks iot:Receive for every message and every subscriber
// before mochi queues anything: live publishes, will messages (delayed
// or not) alike. Retained messages sent on SUBSCRIBE are checked by
// subscribe.go.
//
// mochi consults OnSelectSubscribers only for topics with a shared
// subscriber; the broker's sentinel subscriptions (see New) give every
// topic one. Clients' own shared subscriptions keep working: each group
// gets the message once, at a member allowed to receive it.
type receiveHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *receiveHook) ID() string { return "ggcloud-receive" }

func (h *receiveHook) Provides(b byte) bool { return b == mqtt.OnSelectSubscribers }

func (h *receiveHook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if strings.HasPrefix(pk.TopicName, mqtt.SysPrefix) {
		// mochi's $SYS topics are not AWS IoT's: delivered to nobody.
		clear(subs.Subscriptions)
		clear(subs.Shared)
		clear(subs.SharedSelected)
		return subs
	}
	var resource string
	allowed := func(id string) bool {
		if resource == "" {
			resource = h.b.topicARN(pk.TopicName)
		}
		s := h.b.session(id)
		return s != nil && s.allow(actionReceive, resource)
	}
	for id := range subs.Subscriptions {
		if !allowed(id) {
			delete(subs.Subscriptions, id)
		}
	}
	for _, group := range subs.Shared {
		for id, sub := range group {
			if id == sentinelClient || !allowed(id) {
				continue
			}
			if cur, ok := subs.SharedSelected[id]; ok {
				sub = cur.Merge(sub)
			}
			subs.SharedSelected[id] = sub
			break
		}
	}
	// mochi selects from Shared itself when nothing was selected.
	clear(subs.Shared)
	return subs
}
