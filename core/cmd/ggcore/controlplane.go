package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/connectivity"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/deploy"
	"github.com/ggcore/ggcore/core/tlsconf"
)

// newControlPlane is the client of coreThing.ggHost, identified by the
// IoTCertificate principal and verifying the control plane against
// crypto.caPath; nil when ggHost is not set.
func newControlPlane(cfg *config.Config, identity crypto.Signer, roots *x509.CertPool) (*controlplane.Client, error) {
	if cfg.CoreThing.GGHost == "" {
		return nil, nil
	}
	idCert, err := loadIdentity(cfg, identity)
	if err != nil {
		return nil, err
	}
	return controlplane.New(controlplane.Options{
		Host: cfg.CoreThing.GGHost, Port: cfg.CoreThing.GGHttpPort, Thing: cfg.CoreThing.ThingName,
		TLS: tlsconf.Client(roots, cfg.CoreThing.GGHost, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return idCert, nil
		}),
	}), nil
}

// startBackground starts what runs beside the broker: the cloud bridge,
// and what talks to the control plane (the DCM, the connectivity reporter
// and the deployer).
func (c *core) startBackground(cloud *controlplane.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	c.stopBackground = cancel
	c.startClock(ctx)
	if cloud != nil {
		deployer, err := deploy.New(deploy.Options[checkedGroup]{
			Source:    cloud,
			CoreARN:   c.cfg.CoreThing.ThingArn,
			GroupPath: c.cfg.GroupPath(),
			StatePath: filepath.Join(c.cfg.WriteDirectory, "deployment", "state.json"),
			Check:     c.checkDeployment,
			Activate:  c.switchGroup,
			Prepare:   c.prepareDeployment(cloud),
			Pending:   c.firmwarePending,
			Interval:  time.Duration(c.cfg.GGCore.DeploymentPollSeconds) * time.Second,
			Log:       c.log,
		})
		if err != nil {
			c.log.Error("deployments are off", "error", err)
		} else {
			c.deployer = deployer
		}
	}
	if c.up != nil {
		c.background.Go(func() {
			if err := c.up.bridge.Run(ctx); err != nil {
				c.log.Error("the cloud bridge stopped", "error", err)
			}
		})
	}
	if cloud == nil {
		c.background.Go(func() { c.otaThenDeploy(ctx, nil) })
		return
	}
	if c.dcm != nil {
		c.background.Go(func() { c.dcm.Run(ctx) })
	}
	reporter := &connectivity.Reporter{
		Endpoints: c.endpoints,
		Update:    cloud.UpdateConnectivity,
		Log:       c.log,
		Reported: func(eps []controlplane.Endpoint) {
			// Before the first certificate there is nothing to renew: the
			// first request already names the current addresses.
			if c.dcm != nil && c.dcm.Certificate() != nil && !c.dcm.Covers(connectivity.Hosts(eps)) {
				c.log.Info("the MQTT server certificate does not name every reported address; renewing it")
				c.dcm.Renew()
			}
		},
	}
	c.background.Go(func() { reporter.Run(ctx) })
	c.background.Go(func() { c.otaThenDeploy(ctx, cloud) })
	c.background.Go(func() {
		<-ctx.Done()
		cloud.Close()
	})
}

// deploymentNotified runs when the cloud says a deployment is waiting:
// the deployer looks now rather than at its next poll.
func (c *core) deploymentNotified() {
	if c.deployer != nil {
		c.log.Info("deployment notification from the cloud")
		c.deployer.Notify()
	}
}

// endpoints are what the core reports as its connectivity: the
// configured ggcore.connectivity, or its addresses and MQTT port.
func (c *core) endpoints() ([]controlplane.Endpoint, error) {
	if static := c.cfg.GGCore.Connectivity; static != nil {
		return connectivity.Static(static)
	}
	addrs, err := connectivity.Addresses(c.cfg.GGCore.LocalMQTTBind)
	if err != nil {
		return nil, err
	}
	return connectivity.Endpoints(addrs, c.broker.Addr().(*net.TCPAddr).Port), nil
}
