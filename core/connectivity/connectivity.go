// Package connectivity tells the control plane where devices reach the
// core: its addresses and MQTT port (UpdateConnectivityInfo), at start
// and whenever they change. Discovery hands these endpoints to devices.
package connectivity

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/ggcore/ggcore/core/controlplane"
)

// Addresses returns the addresses a server bound to bind is reachable
// on: bind itself when it names one address, otherwise every global
// unicast address of the machine's interfaces (loopback only when there
// is nothing else), sorted.
func Addresses(bind string) ([]string, error) {
	if bind != "" {
		if ip, err := netip.ParseAddr(bind); err == nil && !ip.IsUnspecified() {
			return []string{ip.String()}, nil
		}
		if bind != "0.0.0.0" && bind != "::" {
			return []string{bind}, nil // a host name
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("connectivity: list addresses: %w", err)
	}
	var global, loopback []string
	for _, a := range addrs {
		prefix, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := prefix.Addr().Unmap()
		switch {
		case ip.IsLoopback():
			loopback = append(loopback, ip.String())
		case ip.IsGlobalUnicast() || ip.IsPrivate():
			global = append(global, ip.String())
		}
	}
	if len(global) == 0 {
		global = loopback
	}
	slices.Sort(global)
	return slices.Compact(global), nil
}

// Endpoints turns addresses and the MQTT port into connectivity entries,
// with IDs in v1's style (AUTOIP_<address>_<index>).
func Endpoints(addrs []string, port int) []controlplane.Endpoint {
	eps := make([]controlplane.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = controlplane.Endpoint{Id: fmt.Sprintf("AUTOIP_%s_%d", a, i), HostAddress: a, PortNumber: port}
	}
	return eps
}

// Static turns HOST:PORT entries (ggcore.connectivity, already checked
// by config) into connectivity entries.
func Static(hostPorts []string) ([]controlplane.Endpoint, error) {
	eps := make([]controlplane.Endpoint, len(hostPorts))
	for i, hp := range hostPorts {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, fmt.Errorf("connectivity: %q: %w", hp, err)
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("connectivity: %q: port: %w", hp, err)
		}
		eps[i] = controlplane.Endpoint{Id: fmt.Sprintf("MANUAL_%d", i), HostAddress: host, PortNumber: n}
	}
	return eps, nil
}

// Hosts lists the host addresses of eps, without repeats.
func Hosts(eps []controlplane.Endpoint) []string {
	var hosts []string
	for _, e := range eps {
		if !slices.Contains(hosts, e.HostAddress) {
			hosts = append(hosts, e.HostAddress)
		}
	}
	return hosts
}

// Reporter keeps the control plane's connectivity information for the
// core current.
type Reporter struct {
	// Endpoints returns the core's current endpoints (see Addresses,
	// Endpoints and Static).
	Endpoints func() ([]controlplane.Endpoint, error)
	// Update sends the endpoints (controlplane.Client.UpdateConnectivity).
	Update func(context.Context, []controlplane.Endpoint) error
	// Reported runs after each successful report, with what it reported.
	Reported func([]controlplane.Endpoint)
	// Interval is how often addresses are checked; zero means 30 s.
	Interval time.Duration
	// Log receives the reporter's lines; nil means slog.Default().
	Log *slog.Logger
}

// Run reports at once, then whenever the addresses change, until ctx
// ends. A failed report is retried with backoff (1 s doubling to 1 min).
func (r *Reporter) Run(ctx context.Context) {
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "connectivity")
	interval := r.Interval
	if interval == 0 {
		interval = 30 * time.Second
	}
	var reported []controlplane.Endpoint
	failures := 0
	for {
		wait := interval
		eps, err := r.Endpoints()
		switch {
		case err != nil:
			log.Warn("cannot list the core's addresses", "error", err)
		case reported == nil || !slices.Equal(eps, reported):
			if err := r.Update(ctx, eps); err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				wait = min(time.Minute, time.Second<<min(failures-1, 10))
				log.Warn("connectivity report failed; retrying", "attempt", failures, "retry_in", wait, "error", err)
				break
			}
			failures = 0
			reported = eps
			log.Info("connectivity reported", "endpoints", describe(eps))
			if r.Reported != nil {
				r.Reported(eps)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// describe lists eps as HOST:PORT.
func describe(eps []controlplane.Endpoint) []string {
	s := make([]string, len(eps))
	for i, e := range eps {
		s[i] = net.JoinHostPort(e.HostAddress, strconv.Itoa(e.PortNumber))
	}
	return s
}
