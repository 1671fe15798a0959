// Package clock keeps a gateway's wall clock right. A gateway without a
// battery-backed clock boots in 1970 (or at its image's build time, where
// gginit puts it), and every certificate check fails until the clock is
// set. Clock asks the configured NTP servers in order and, when none
// answers, the control plane for the Date of an HTTPS answer; it logs the
// clock's state and, when allowed, steps the system clock.
//
// Trust: NTP is unauthenticated, so an attacker on the path to an NTP
// server can move the clock; a time earlier than the image's build time
// (Floor) is refused from every source. The control plane's Date comes
// over TLS verified against the configured roots and server name, but
// with a wrong clock the validity dates cannot be checked at "now". The
// handshake therefore checks the chain at the clock's time clamped into
// the leaf's validity (signature, name and key usage are what it
// establishes), and the Date is accepted only if it is not before Floor
// and the whole chain is valid at that Date. A key of an expired control
// plane certificate can thus only claim a time inside that certificate's
// validity and after the build time.
package clock

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/beevik/ntp"
	"golang.org/x/sys/unix"
)

// Steps smaller than these are left alone: NTP measures to a few
// milliseconds, an HTTP Date to a second.
const (
	ntpStepThreshold  = 128 * time.Millisecond
	dateStepThreshold = 2 * time.Second
)

// Defaults for Options.
const (
	DefaultInterval = time.Hour
	DefaultTimeout  = 5 * time.Second
	// maxRetry caps the wait between failed syncs before the first success.
	maxRetry = time.Minute
)

// Options configure a Clock.
type Options struct {
	// NTPServers are asked in order: "host" or "host:port" (port 123 by
	// default).
	NTPServers []string
	// ControlPlane, when not nil, is asked for its HTTPS Date when no NTP
	// server answers.
	ControlPlane *ControlPlane
	// SetClock lets the Clock step the system clock; without it the Clock
	// only measures and logs the offset.
	SetClock bool
	// Floor is the earliest time the clock may show, such as the image's
	// build time; zero for none.
	Floor time.Time
	// Interval is the time between syncs once synced (DefaultInterval if
	// zero).
	Interval time.Duration
	// Timeout bounds each query (DefaultTimeout if zero).
	Timeout time.Duration
	// OnStep runs after the Clock stepped the system clock by step.
	OnStep func(step time.Duration)
	// Log receives the clock's state; nil discards it.
	Log *slog.Logger
	// Set sets the system clock; nil means SetSystemClock.
	Set func(time.Time) error
}

// ControlPlane is the HTTPS server whose Date the Clock falls back to.
type ControlPlane struct {
	// Host and Port of the control plane; Host is also the name its
	// certificate must carry.
	Host string
	Port int
	// Roots verify its certificate chain.
	Roots *x509.CertPool
	// GetClientCertificate, when set, is the client identity offered.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// Result is one successful measurement.
type Result struct {
	Source string        // "ntp" or "control-plane"
	Server string        // the server that answered
	Offset time.Duration // how far the system clock was behind (positive) or ahead
	// Stepped says whether the system clock was stepped by Offset.
	Stepped bool
}

// Clock measures and sets the system clock. Create it with New.
type Clock struct {
	o      Options
	client *http.Client
}

// New returns a Clock with o's defaults filled in.
func New(o Options) *Clock {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Set == nil {
		o.Set = SetSystemClock
	}
	c := &Clock{o: o}
	if cp := o.ControlPlane; cp != nil {
		c.client = &http.Client{
			Timeout: o.Timeout,
			Transport: &http.Transport{
				Proxy:             nil,
				DisableKeepAlives: true,
				TLSClientConfig:   cp.tlsConfig(o.Floor),
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c
}

// Enabled reports whether the Clock has anything to do: a source to ask
// or a clock it may set.
func (c *Clock) Enabled() bool {
	return c.o.SetClock || len(c.o.NTPServers) > 0
}

// SetSystemClock steps the system's real-time clock to t. It needs root
// or CAP_SYS_TIME.
func SetSystemClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("clock: set the system clock (needs root or CAP_SYS_TIME): %w", err)
	}
	return nil
}

// Run syncs until ctx ends: at once, then again after a failure with
// backoff (1 s doubling to a minute, to Interval once synced), and every
// Interval after a success. Before it starts, it raises a clock earlier
// than Floor to Floor when it may set the clock.
func (c *Clock) Run(ctx context.Context) {
	now := time.Now()
	c.o.Log.Info("clock not synchronised yet", "now", now.UTC().Format(time.RFC3339), "floor", formatFloor(c.o.Floor),
		"ntp_servers", strings.Join(c.o.NTPServers, ","), "control_plane", c.o.ControlPlane != nil, "set_clock", c.o.SetClock)
	if c.o.SetClock && now.Before(c.o.Floor) {
		if err := c.o.Set(c.o.Floor); err != nil {
			c.o.Log.Error("clock is before the image's build time and cannot be raised to it", "error", err)
		} else {
			c.o.Log.Warn("clock was before the image's build time; raised to it", "from", now.UTC().Format(time.RFC3339),
				"to", c.o.Floor.UTC().Format(time.RFC3339))
		}
	}
	synced := false
	failures := 0
	for {
		wait := c.o.Interval
		res, err := c.Sync(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			ceiling := maxRetry
			if synced {
				ceiling = c.o.Interval
			}
			d := min(ceiling, time.Second<<min(failures-1, 20))
			wait = d + rand.N(d/10+1)
			lvl := slog.LevelWarn
			if !synced && failures > 1 {
				lvl = slog.LevelInfo
			}
			c.o.Log.Log(ctx, lvl, "clock sync failed; retrying", "attempt", failures, "retry_in", wait.Round(time.Millisecond),
				"synchronised", synced, "error", err)
		default:
			failures = 0
			attrs := []any{"source", res.Source, "server", res.Server, "offset", res.Offset.Round(time.Millisecond),
				"stepped", res.Stepped, "now", time.Now().UTC().Format(time.RFC3339)}
			switch {
			case !synced:
				c.o.Log.Info("clock synchronised", attrs...)
			case res.Stepped:
				c.o.Log.Warn("clock stepped", attrs...)
			default:
				c.o.Log.Debug("clock checked", attrs...)
			}
			synced = true
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// Sync measures the clock once: the NTP servers in order, then the
// control plane; the first good answer wins. It steps the clock when the
// offset exceeds the source's precision and the Clock may set it.
func (c *Clock) Sync(ctx context.Context) (Result, error) {
	var errs []error
	for _, s := range c.o.NTPServers {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		off, err := c.queryNTP(ctx, s)
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("ntp %s: %w", s, err))
			continue
		}
		return c.apply(Result{Source: "ntp", Server: s, Offset: off}, ntpStepThreshold)
	}
	if cp := c.o.ControlPlane; cp != nil {
		server := net.JoinHostPort(cp.Host, strconv.Itoa(cp.Port))
		off, err := c.controlPlaneOffset(ctx)
		if err == nil {
			return c.apply(Result{Source: "control-plane", Server: server, Offset: off}, dateStepThreshold)
		}
		errs = append(errs, fmt.Errorf("control plane %s: %w", server, err))
	}
	if len(errs) == 0 {
		return Result{}, errors.New("clock: no time source configured (ggcore.time.ntpServers, coreThing.ggHost)")
	}
	return Result{}, fmt.Errorf("clock: no time source answered: %w", errors.Join(errs...))
}

// apply checks a measurement against Floor and steps the clock when
// allowed and worth it.
func (c *Clock) apply(r Result, threshold time.Duration) (Result, error) {
	if t := time.Now().Add(r.Offset); t.Before(c.o.Floor) {
		return Result{}, fmt.Errorf("clock: %s %s says %s, before the image's build time %s; refused", r.Source, r.Server,
			t.UTC().Format(time.RFC3339), c.o.Floor.UTC().Format(time.RFC3339))
	}
	if r.Offset.Abs() < threshold {
		return r, nil
	}
	if !c.o.SetClock {
		c.o.Log.Warn("the system clock is off; ggcore.time.setClock is false, so ggcore leaves it",
			"offset", r.Offset.Round(time.Millisecond), "source", r.Source, "server", r.Server)
		return r, nil
	}
	if err := c.o.Set(time.Now().Add(r.Offset)); err != nil {
		return Result{}, err
	}
	r.Stepped = true
	if c.o.OnStep != nil {
		c.o.OnStep(r.Offset)
	}
	return r, nil
}

// queryNTP returns the offset one NTP server measures. It returns when
// ctx ends without waiting for the query (which ends within Timeout).
func (c *Clock) queryNTP(ctx context.Context, server string) (time.Duration, error) {
	type answer struct {
		off time.Duration
		err error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := ntp.QueryWithOptions(server, ntp.QueryOptions{Timeout: c.o.Timeout})
		if err == nil {
			if verr := resp.Validate(); verr != nil {
				err = fmt.Errorf("unusable answer: %w", verr)
			}
		}
		if err != nil {
			done <- answer{err: err}
			return
		}
		done <- answer{off: resp.ClockOffset}
	}()
	select {
	case a := <-done:
		return a.off, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// controlPlaneOffset asks the control plane for any page over verified
// TLS and returns the offset its Date header gives.
func (c *Clock) controlPlaneOffset(ctx context.Context) (time.Duration, error) {
	cp := c.o.ControlPlane
	u := "https://" + net.JoinHostPort(cp.Host, strconv.Itoa(cp.Port)) + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return 0, err
	}
	sent := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	received := time.Now()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return 0, fmt.Errorf("no usable Date header (%q): %w", resp.Header.Get("Date"), err)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return 0, errors.New("no TLS peer certificate")
	}
	if err := cp.verifyAt(resp.TLS.PeerCertificates, date); err != nil {
		return 0, fmt.Errorf("its certificate is not valid at the Date it sent (%s): %w", date.UTC().Format(time.RFC3339), err)
	}
	// The Date is truncated to the second: the server's time at the
	// answer's midpoint is half a second after it, on average.
	mid := sent.Add(received.Sub(sent) / 2)
	return date.Add(500 * time.Millisecond).Sub(mid), nil
}

// tlsConfig verifies the control plane's chain and name at the clock's
// time clamped into the leaf's validity (no earlier than floor): the
// validity proper is checked against the Date the server sends.
func (cp *ControlPlane) tlsConfig(floor time.Time) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		ServerName:           cp.Host,
		GetClientCertificate: cp.GetClientCertificate,
		// Verified in VerifyConnection, at a time that does not depend on
		// the clock being right (see the package comment).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("clock: the control plane sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			at := time.Now()
			if at.Before(floor) {
				at = floor
			}
			if at.Before(leaf.NotBefore) {
				at = leaf.NotBefore
			}
			if at.After(leaf.NotAfter) {
				at = leaf.NotAfter
			}
			return cp.verifyAt(cs.PeerCertificates, at)
		},
	}
}

// verifyAt verifies a peer chain against the roots and the host name as
// of at.
func (cp *ControlPlane) verifyAt(chain []*x509.Certificate, at time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         cp.Roots,
		Intermediates: inter,
		DNSName:       cp.Host,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func formatFloor(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// ParseBuildTime parses a build time given as Unix seconds (as
// SOURCE_DATE_EPOCH and `git log --format=%ct` write it); "" is no build
// time (the zero Time).
func ParseBuildTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("clock: build time %q is not Unix seconds", s)
	}
	return time.Unix(n, 0), nil
}
