package main

import (
	"log/slog"

	"github.com/ggcore/ggcore/core/broker"
)

// stats are the counters logged every minute when they change.
type stats struct {
	broker.Stats
	// Spooled messages wait for the cloud; SpoolDropped were dropped,
	// oldest first, to make room (since start); UpstreamRefused were
	// refused by the upstream broker and dropped.
	Spooled, SpoolDropped, UpstreamRefused int64
}

// stats reads the counters.
func (c *core) stats() stats {
	s := stats{Stats: c.broker.Stats()}
	if c.up != nil {
		st := c.up.spool.Stats()
		s.Spooled, s.SpoolDropped = int64(st.Messages), int64(st.Dropped)
		s.UpstreamRefused = c.up.bridge.Refused()
	}
	return s
}

// logStats logs the counters.
func logStats(log *slog.Logger, s stats) {
	log.Info("broker stats", "clients", s.Clients, "refused", s.Refused, "unrouted", s.Unrouted,
		"dropped", s.Dropped, "inflight_dropped", s.InflightDropped, "spooled", s.Spooled, "spool_dropped", s.SpoolDropped,
		"upstream_refused", s.UpstreamRefused, "connect_timeouts", s.ConnectTimeouts)
}
