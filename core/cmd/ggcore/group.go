package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/ggcore/ggcore/core/broker"
	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/router"
)

// reloadGroup re-reads group.json; a bad group is refused and the running
// table kept.
func (c *core) reloadGroup() {
	g, bg, err := loadGroup(c.cfg)
	if err == nil {
		err = c.switchGroup(checkedGroup{g, bg})
	}
	if err != nil {
		c.log.Error("group reload refused; keeping the running group", "path", c.cfg.GroupPath(), "error", err)
		return
	}
	c.loadSecrets(g)
	c.log.Info("group reloaded", "group", g.GroupId, "version", g.GroupVersionId,
		"devices", len(g.Devices), "subscriptions", len(g.Subscriptions))
}

// checkedGroup is a group.json that passed every check, with what the
// broker enforces for it.
type checkedGroup struct {
	g  *config.Group
	bg broker.Group
}

// switchGroup makes the broker enforce g, in one step.
func (c *core) switchGroup(g checkedGroup) error {
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	if err := c.broker.SetGroup(g.bg); err != nil {
		return err
	}
	if c.up != nil {
		c.up.bridge.SetFilters(cloudFilters(g.g))
	}
	if err := c.switchFunctions(g.g); err != nil {
		c.log.Error("local functions not switched to the new group", "error", err)
	}
	logUnavailableTargets(c.log, g.g, c.up != nil)
	c.groupID, c.devices, c.subscriptions = g.g.GroupId, len(g.g.Devices), len(g.g.Subscriptions)
	return nil
}

// checkDeployment checks a deployment's group.json completely before
// anything changes: its format, that it is this core's, that it is the
// running group's (a core serves one group), and its routing table.
func (c *core) checkDeployment(ref controlplane.DeploymentRef, data []byte) (checkedGroup, error) {
	g, err := config.ParseGroup(data)
	if err != nil {
		return checkedGroup{}, err
	}
	c.groupMu.Lock()
	running := c.groupID
	c.groupMu.Unlock()
	switch {
	case g.GroupId != ref.GroupId:
		return checkedGroup{}, fmt.Errorf("GroupId %q: the deployment is of group %q", g.GroupId, ref.GroupId)
	case g.GroupId != running:
		return checkedGroup{}, fmt.Errorf("GroupId %q: this core serves group %q", g.GroupId, running)
	}
	bg, err := brokerGroup(c.cfg, g)
	if err != nil {
		return checkedGroup{}, err
	}
	return checkedGroup{g, bg}, nil
}

// loadGroup reads group.json and builds what the broker enforces.
func loadGroup(cfg *config.Config) (*config.Group, broker.Group, error) {
	g, err := config.LoadGroup(cfg.GroupPath())
	if err != nil {
		return nil, broker.Group{}, err
	}
	bg, err := brokerGroup(cfg, g)
	if err != nil {
		return nil, broker.Group{}, fmt.Errorf("%s: %w", cfg.GroupPath(), err)
	}
	return g, bg, nil
}

// brokerGroup checks that g is this core's and builds its routing table.
func brokerGroup(cfg *config.Config, g *config.Group) (broker.Group, error) {
	if core := g.Cores[0]; core.ThingArn != cfg.CoreThing.ThingArn {
		return broker.Group{}, fmt.Errorf("Cores[0].ThingArn %q is not this core (coreThing.thingArn %q)",
			core.ThingArn, cfg.CoreThing.ThingArn)
	}
	subs := make([]router.Subscription, len(g.Subscriptions))
	for i, s := range g.Subscriptions {
		subs[i] = router.Subscription{ID: s.Id, Source: s.Source, Subject: s.Subject, Target: s.Target}
	}
	table, err := router.New(subs)
	if err != nil {
		return broker.Group{}, err
	}
	bg := broker.Group{ID: strings.Clone(g.GroupId), Table: table, Devices: brokerDevices(g.Devices), Functions: functionARNs(g)}
	return bg, nil
}

// brokerDevices are the devices as the broker keeps them while the group
// runs. Their strings are copied into one allocation: as read from
// group.json, each is a small allocation of its own among the parser's
// garbage, keeping partly used heap pages once that is collected, and the
// whole certificate ARN is kept for the ID at its end. The thing name is
// the end of the thing ARN (arn:...:thing/NAME).
func brokerDevices(devices []config.Thing) []broker.Thing {
	size := 0
	for _, d := range devices {
		size += len(d.ThingArn) + len(d.CertificateID())
	}
	var b strings.Builder
	b.Grow(size)
	for _, d := range devices {
		b.WriteString(d.ThingArn)
		b.WriteString(d.CertificateID())
	}
	all := b.String()
	out := make([]broker.Thing, len(devices))
	for i, d := range devices {
		arn := all[:len(d.ThingArn)]
		all = all[len(arn):]
		id := all[:len(d.CertificateID())]
		all = all[len(id):]
		out[i] = broker.Thing{Name: arn[len(arn)-len(d.Name()):], ARN: arn, CertificateID: id}
	}
	return out
}

// logUnavailableTargets names subscriptions whose source or target does
// not exist in this core (the cloud without iotHost, the shadow service,
// Lambda functions); they are valid and route nothing.
func logUnavailableTargets(log *slog.Logger, g *config.Group, cloudOn bool) {
	for _, s := range g.Subscriptions {
		for _, end := range []string{s.Source, s.Target} {
			switch {
			case end == "cloud" && !cloudOn:
				log.Warn("subscription endpoint cloud: coreThing.iotHost is not set, so it routes nothing",
					"subscription", s.Id)
			case end == "GGShadowService":
				log.Warn("subscription endpoint not available in this core yet; it routes nothing",
					"subscription", s.Id, "endpoint", end)
			case isFunctionARN(end) && !functionRunnable(g, end):
				log.Warn("function has no Executable (or is a v1 system function); subscription routes nothing",
					"subscription", s.Id, "endpoint", end)
			}
		}
	}
}

// isFunctionARN reports a Lambda function ARN, in any partition.
func isFunctionARN(s string) bool {
	return strings.HasPrefix(s, "arn:") && strings.Contains(s, ":lambda:")
}
