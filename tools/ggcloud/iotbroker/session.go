package iotbroker

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/ggcore/ggcore/tools/ggcloud/policy"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// logInterval is how often one connection's refusal of one action on one
// resource is logged again.
const logInterval = 10 * time.Second

// maxLogged bounds the refusals a session remembers for rate limiting.
const maxLogged = 1024

// session is the authorization state of one client ID: the certificate
// it connected with and that certificate's policies, read again from the
// store at most every Broker.ttl. It outlives the connection while mochi
// keeps the client's persistent session, so messages queued for an
// offline client are checked against its policies.
type session struct {
	b        *Broker
	owner    *mqtt.Client // the connection that established it
	clientID string
	certID   string

	grant      atomic.Pointer[grant]
	refreshing atomic.Bool

	// The decision OnPacketRead took on the PUBLISH being processed, for
	// OnACLCheck; both run on the owner's read goroutine, in that order.
	pubTopic   string
	pubAllowed bool
	pubPending bool
	// What OnSubscribe left for the SUBACK and the retained replay of the
	// SUBSCRIBE being processed (subscribe.go); same goroutine.
	subscribe *subscribeState

	logMu  sync.Mutex
	logged map[string]*logEntry
}

// grant is a certificate's thing and policies as read at one time, and
// the decisions taken with them.
type grant struct {
	thing    string
	policies []*policy.Document
	loaded   time.Time

	// decisions caches policy.Decide, which costs microseconds and
	// dozens of allocations, for up to maxDecisions requests: a
	// connection's topics are usually few.
	decisions sync.Map // decisionKey -> policy.Decision
	cached    atomic.Int32
}

type decisionKey struct{ action, resource string }

// maxDecisions bounds the decisions a grant caches.
const maxDecisions = 4096

// decide decides action on resource, from the cache if it can.
func (g *grant) decide(action, resource string) policy.Decision {
	key := decisionKey{action, resource}
	if d, ok := g.decisions.Load(key); ok {
		return d.(policy.Decision)
	}
	d := policy.Decide(g.policies, policy.Request{Action: action, Resource: resource, ThingName: g.thing})
	if g.cached.Load() < maxDecisions {
		g.cached.Add(1)
		g.decisions.Store(key, d)
	}
	return d
}

type logEntry struct {
	at       time.Time
	repeated int
}

func newSession(b *Broker, cl *mqtt.Client, certID string, c store.Caller) *session {
	s := &session{b: b, owner: cl, clientID: cl.ID, certID: certID}
	s.grant.Store(&grant{thing: c.Thing.Name, policies: c.Policies, loaded: time.Now()})
	return s
}

// current returns the grant, reading it again from the store when it is
// older than the broker's TTL. One caller reads at a time; the others
// use the grant they find meanwhile.
func (s *session) current() *grant {
	g := s.grant.Load()
	if s.b.ttl > 0 && time.Since(g.loaded) < s.b.ttl {
		return g
	}
	if !s.refreshing.CompareAndSwap(false, true) {
		return g
	}
	defer s.refreshing.Store(false)
	c, err := s.b.store.CallerOf(s.certID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Not registered any more: nothing is allowed.
		s.b.log.Warn("certificate of a connected client is no longer registered", "client", s.clientID, "certificate", s.certID)
		g = &grant{thing: g.thing, loaded: time.Now()}
	case err != nil:
		s.b.log.Error("policies of a connected client not read again: keeping the previous ones", "client", s.clientID, "certificate", s.certID, "error", err)
		g = &grant{thing: g.thing, policies: g.policies, loaded: time.Now()}
	default:
		g = &grant{thing: c.Thing.Name, policies: c.Policies, loaded: time.Now()}
	}
	s.grant.Store(g)
	return g
}

// allow decides action on resource with the session's current policies
// and logs a refusal.
func (s *session) allow(action, resource string) bool {
	if !s.b.enforce {
		return true
	}
	g := s.current()
	d := g.decide(action, resource)
	if !d.Allowed {
		s.refused(g.thing, action, resource, d.Reason)
	}
	return d.Allowed
}

// refused logs a refusal, at most once per logInterval for one action on
// one resource, with the number of refusals not logged since.
func (s *session) refused(thing, action, resource, reason string) {
	key := action + " " + resource
	now := time.Now()
	s.logMu.Lock()
	if s.logged == nil || len(s.logged) >= maxLogged {
		s.logged = make(map[string]*logEntry)
	}
	e := s.logged[key]
	if e != nil && now.Sub(e.at) < logInterval {
		e.repeated++
		s.logMu.Unlock()
		return
	}
	repeated := 0
	if e != nil {
		repeated = e.repeated
	}
	s.logged[key] = &logEntry{at: now}
	s.logMu.Unlock()
	args := []any{"client", s.clientID, "thing", thing, "action", action, "resource", resource, "reason", reason}
	if repeated > 0 {
		args = append(args, "repeated", repeated)
	}
	s.b.log.Info("mqtt request refused", args...)
}

// session returns the authorization state of a client ID, or nil.
func (b *Broker) session(clientID string) *session {
	if v, ok := b.sessions.Load(clientID); ok {
		return v.(*session)
	}
	return nil
}

// sessionOf returns the session a connection established, or nil when
// the connection has been superseded by a newer one with its client ID.
func (b *Broker) sessionOf(cl *mqtt.Client) *session {
	if s := b.session(cl.ID); s != nil && s.owner == cl {
		return s
	}
	return nil
}

// forget removes cl's session, unless a newer connection has replaced it.
func (b *Broker) forget(cl *mqtt.Client) {
	if s := b.sessionOf(cl); s != nil {
		b.sessions.CompareAndDelete(cl.ID, s)
	}
}
