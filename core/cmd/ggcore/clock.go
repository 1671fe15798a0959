package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/ggcore/ggcore/core/clock"
	"github.com/ggcore/ggcore/core/config"
)

// buildTime is when this ggcore was built, in Unix seconds: the firmware
// image's build sets it to its commit's time (initramfs/build.sh,
// -ldflags -X main.buildTime=...), so the same commit builds the same
// bytes. Empty in other builds: no floor for the clock.
var buildTime string

// newClock is what keeps the system clock right, per ggcore.time: the NTP
// servers, then the control plane's HTTPS Date (verified against
// crypto.caPath, with the core's identity); nil when ggcore.time asks
// for nothing.
func newClock(cfg *config.Config, identity crypto.Signer, roots *x509.CertPool, onStep func(time.Duration), log *slog.Logger) *clock.Clock {
	t := cfg.GGCore.Time
	if !t.SetClock && len(t.NTPServers) == 0 {
		log.Info("clock not managed by ggcore (ggcore.time sets neither setClock nor ntpServers)")
		return nil
	}
	if len(t.NTPServers) == 0 && cfg.CoreThing.GGHost == "" {
		log.Warn("ggcore.time.setClock is set but there is no time source (ggcore.time.ntpServers, coreThing.ggHost): the clock stays as it is")
		return nil
	}
	floor, err := clock.ParseBuildTime(buildTime)
	if err != nil {
		log.Warn("ignoring the build time", "error", err)
	}
	o := clock.Options{NTPServers: t.NTPServers, SetClock: t.SetClock, Floor: floor, OnStep: onStep,
		Log: log.With("component", "clock")}
	if ct := cfg.CoreThing; ct.GGHost != "" {
		cp := &clock.ControlPlane{Host: ct.GGHost, Port: ct.GGHttpPort, Roots: roots}
		if id, err := loadIdentity(cfg, identity); err == nil {
			cp.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id, nil }
		}
		o.ControlPlane = cp
	}
	return clock.New(o)
}

// clockStepped runs after the clock was stepped: a DCM still waiting for
// its first certificate (its requests failed while the clock was wrong)
// asks again now rather than at the end of its backoff.
func (c *core) clockStepped(step time.Duration) {
	if c.dcm != nil && c.dcm.Certificate() == nil {
		c.dcm.Renew()
	}
}

// startClock runs the clock beside the rest until ctx ends.
func (c *core) startClock(ctx context.Context) {
	if c.clock != nil {
		c.background.Go(func() { c.clock.Run(ctx) })
	}
}
