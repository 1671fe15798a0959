package e2e

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// deployFleet is a fleet registered in a running ggcloud whose core asks
// for deployments every second.
func deployFleet(t *testing.T, devices ...string) (*fleet, *cloudProc, string) {
	t.Helper()
	f := newFleet(t, devices...)
	c := withCloud(t, f, cloudOptions{})
	f.setConfig(t, "ggcore.deploymentPollSeconds", 1)
	group := readJSON(t, f.groupPath())["GroupId"].(string)
	return f, c, group
}

// deploy runs `ggcloud group deploy` and returns the deployment ID.
func (c *cloudProc) deploy(t *testing.T, group string) string {
	t.Helper()
	out := runOK(t, bin.ggcloud, "--data", c.data, "group", "deploy", group)
	fields := strings.Fields(out)
	if len(fields) == 0 {
		t.Fatalf("ggcloud group deploy printed nothing")
	}
	return fields[len(fields)-1]
}

// status is a deployment's status for the core, as ggcloud records it.
func (c *cloudProc) status(t *testing.T, group, deployment string) (status, message string) {
	t.Helper()
	out := runOK(t, bin.ggcloud, "--data", c.data, "deployment", "status", group, deployment)
	for _, s := range []string{"Success", "Failure", "InProgress"} {
		if strings.Contains(out, s) {
			return s, out
		}
	}
	return "", out
}

// waitStatus waits for a deployment's final status.
func (c *cloudProc) waitStatus(t *testing.T, group, deployment string) (string, string) {
	t.Helper()
	var s, out string
	if !testtool.Poll(testtool.Timeout, func() bool {
		s, out = c.status(t, group, deployment)
		return s == "Success" || s == "Failure"
	}) {
		t.Fatalf("deployment %s not finished within %v:\n%s", deployment, testtool.Timeout, out)
	}
	return s, out
}

// TestDeploymentAddsSubscription: a subscription added in ggcloud and
// deployed routes messages without a restart of the core, and the core
// reports Success.
func TestDeploymentAddsSubscription(t *testing.T) {
	t.Parallel()
	f, c, group := deployFleet(t, "dev1", "dev2")
	core := startCore(t, f)
	dev1, dev2 := f.connect5(t, "dev1"), f.connect5(t, "dev2")
	if code := dev2.Subscribe(t, 1, "sensors/dev1/#")[0]; code < 0x80 {
		t.Fatalf("SUBACK 0x%02x before the deployment; want a refusal (no subscription yet)", code)
	}

	runOK(t, bin.ggcloud, "--data", c.data, "group", "add-subscription", group,
		"--id", "s-new", "--source", "dev1", "--subject", "sensors/dev1/#", "--target", "dev2")
	id := c.deploy(t, group)
	if s, out := c.waitStatus(t, group, id); s != "Success" {
		t.Fatalf("deployment %s: %s", id, out)
	}
	if i := strings.Index(core.log.String(), "deployment applied"); i < 0 {
		t.Errorf("no 'deployment applied' in the core log:\n%s", core.log)
	} else {
		line := core.log.String()[i:]
		t.Logf("core: %s", line[:strings.IndexByte(line, '\n')])
	}
	dev2.MustSubscribe(t, 1, "sensors/dev1/#")
	dev1.MustPublish(t, "sensors/dev1/t", "deployed route", 1, false)
	mqtttest.AssertPayloads(t, "dev2", dev2.ReceiveUntil(t, "deployed route"), "deployed route")
	g, err := config.LoadGroup(f.groupPath())
	if err != nil {
		t.Fatalf("group.json after the deployment: %v", err)
	}
	if len(g.Subscriptions) != 1 || g.Subscriptions[0].Id != "s-new" {
		t.Errorf("group.json subscriptions %+v; want the deployed s-new", g.Subscriptions)
	}
}

// TestDeploymentRemovesDevice: a device removed from the group and
// deployed loses its connection and cannot come back.
func TestDeploymentRemovesDevice(t *testing.T) {
	t.Parallel()
	f, c, group := deployFleet(t, "dev1", "dev2")
	startCore(t, f)
	dev2 := f.connect5(t, "dev2")
	runOK(t, bin.ggcloud, "--data", c.data, "group", "remove-device", group, "dev2")
	id := c.deploy(t, group)
	if s, out := c.waitStatus(t, group, id); s != "Success" {
		t.Fatalf("deployment %s: %s", id, out)
	}
	select {
	case <-dev2.Done():
	case <-time.After(testtool.Timeout):
		t.Fatalf("dev2 still connected %v after a deployment removed it", testtool.Timeout)
	}
	if _, _, err := f.dial5(t, f.identity("dev2").tlsCertificate(t), "dev2", nil); err == nil {
		t.Error("dev2 connected again after it was removed")
	}
	f.connect5(t, "dev1")
}

// TestForeignDeploymentRefused: a deployment of another group than the
// one the core runs changes nothing and is reported as a Failure with the
// reason.
func TestForeignDeploymentRefused(t *testing.T) {
	t.Parallel()
	f, c, group := deployFleet(t, "dev1")
	g := readJSON(t, f.groupPath())
	g["GroupId"] = "another-group"
	writeJSON(t, f.groupPath(), g)
	before, err := os.ReadFile(f.groupPath())
	if err != nil {
		t.Fatal(err)
	}
	core := startCore(t, f)
	id := c.deploy(t, group)
	s, out := c.waitStatus(t, group, id)
	if s != "Failure" || !strings.Contains(out, "this core serves group") {
		t.Fatalf("deployment %s: %s; want Failure naming the group", id, out)
	}
	after, _ := os.ReadFile(f.groupPath())
	if string(after) != string(before) {
		t.Error("a refused deployment changed group.json")
	}
	if !core.log.WaitFor("deployment refused", 0, testtool.Timeout, core.exited) {
		t.Errorf("no refusal in the core log:\n%s", core.log)
	}
	f.connect5(t, "dev1")
}

// TestKilledDuringDeploymentsStaysConsistent: a core killed with SIGKILL
// at random moments while deployments arrive always restarts on a
// complete group.json, old or new, and ends on the last one.
func TestKilledDuringDeploymentsStaysConsistent(t *testing.T) {
	t.Parallel()
	f, c, group := deployFleet(t, "dev1", "dev2")
	var last string
	for i := range 6 {
		core := startCore(t, f)
		sub := []string{"--id", "s" + string(rune('a'+i)), "--source", "dev1", "--subject", "t" + string(rune('a'+i)) + "/#", "--target", "dev2"}
		runOK(t, bin.ggcloud, append([]string{"--data", c.data, "group", "add-subscription", group}, sub...)...)
		last = c.deploy(t, group)
		// The kill comes at a random moment of the deployment: a random
		// delay is the point here, not a wait for something.
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		core.stopped = true
		_ = core.cmd.Process.Signal(syscall.SIGKILL)
		<-core.exited
		data, err := os.ReadFile(f.groupPath())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.ParseGroup(data); err != nil {
			t.Fatalf("after SIGKILL %d group.json does not parse: %v\n%s", i, err, data)
		}
	}
	core := startCore(t, f)
	if s, out := c.waitStatus(t, group, last); s != "Success" {
		t.Fatalf("last deployment %s: %s\ncore log:\n%s", last, out, core.log)
	}
	var g struct{ Subscriptions []json.RawMessage }
	data, _ := os.ReadFile(f.groupPath())
	if err := json.Unmarshal(data, &g); err != nil || len(g.Subscriptions) != 6 {
		t.Errorf("group.json after the last deployment has %d subscriptions (%v); want 6", len(g.Subscriptions), err)
	}
}
