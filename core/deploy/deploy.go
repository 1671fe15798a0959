// Package deploy takes new group definitions from the control plane: it
// learns of a deployment (polling, or when notified), fetches its
// group.json, has it checked completely, writes it durably in place of the
// running group.json (write new, fsync, rename, fsync the directory),
// switches the core to it, and reports InProgress, then Success or Failure
// with the reason. A deployment that fails any step changes nothing: the
// running group and group.json stay as they were. A core killed at any
// point restarts on the old group.json or the new one, never a mix.
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/internal/atomicfile"
)

// NotifyTopic is where the control plane tells a core, over the upstream
// MQTT connection, that its group has a new deployment: inside the
// $aws/things/<core>-* topics v1's minimal core policy allows. The
// payload is {"GroupId","DeploymentId"}; the core fetches the deployment
// as it does when polling.
func NotifyTopic(core string) string { return "$aws/things/" + core + "-gda/deployment/notify" }

// Source is where deployments come from: the control plane.
type Source interface {
	CurrentDeployment(ctx context.Context) (controlplane.DeploymentRef, error)
	GetDeployment(ctx context.Context, ref controlplane.DeploymentRef) ([]byte, error)
	UpdateDeploymentStatus(ctx context.Context, ref controlplane.DeploymentRef, coreARN, status, message string) error
}

// Options configure a Deployer for groups checked into a G.
type Options[G any] struct {
	Source Source
	// CoreARN is the core's thing ARN, for status reports.
	CoreARN string
	// GroupPath is the running group.json; StatePath records the last
	// deployment handled and its outcome.
	GroupPath, StatePath string
	// Check validates a deployment's group.json completely (format, this
	// core, this group, the routing table) and returns what Activate takes.
	Check func(ref controlplane.DeploymentRef, data []byte) (G, error)
	// Activate switches the running core to a checked group in one step.
	Activate func(G) error
	// Prepare, if set, runs after Check and before group.json is
	// replaced: it makes ready what comes with the group (its secrets)
	// without changing what runs, and returns commit, called once the
	// group is active, and abort, called when it is not. Its error fails
	// the deployment, changing nothing; one wrapped with Retry is tried
	// again at the next poll.
	Prepare func(ctx context.Context, ref controlplane.DeploymentRef, data []byte, g G) (commit, abort func(), err error)
	// Pending, if set, is asked once a deployment is applied: a non-empty
	// message records and reports it InProgress with that message instead
	// of Success, for a deployment that completes later (an image update
	// completes after the reboot into the new image, and the core reports
	// its outcome then); then runs after the report. An interim
	// InProgress is not reported again after a restart.
	Pending func(ref controlplane.DeploymentRef) (message string, then func())
	// Interval is how often the control plane is asked; zero means 30 s.
	Interval time.Duration
	// Log receives the deployer's lines; nil means slog.Default().
	Log *slog.Logger
}

// Deployer applies deployments until its context ends.
type Deployer[G any] struct {
	o      Options[G]
	log    *slog.Logger
	notify chan struct{}
	state  record
}

// record is the state file: the last deployment handled.
type record struct {
	controlplane.DeploymentRef
	Status  string    `json:"Status"`
	Message string    `json:"ErrorMessage,omitempty"`
	At      time.Time `json:"At"`
	// Reported is false until the control plane took the final status.
	Reported bool `json:"Reported"`
}

// New returns a Deployer; it reads the state file if there is one.
func New[G any](o Options[G]) (*Deployer[G], error) {
	if o.Source == nil || o.Check == nil || o.Activate == nil || o.GroupPath == "" || o.StatePath == "" {
		return nil, errors.New("deploy: a source, Check, Activate, the group path and the state path are required")
	}
	if o.Interval == 0 {
		o.Interval = 30 * time.Second
	}
	d := &Deployer[G]{o: o, log: o.Log, notify: make(chan struct{}, 1)}
	if d.log == nil {
		d.log = slog.Default()
	}
	d.log = d.log.With("component", "deploy")
	data, err := os.ReadFile(o.StatePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("deploy: %w", err)
	default:
		if err := json.Unmarshal(data, &d.state); err != nil {
			d.log.Warn("deployment state unreadable; the current deployment will be applied again", "path", o.StatePath, "error", err)
			d.state = record{}
		}
	}
	return d, nil
}

// Notify asks Run to look for a deployment now (a notification from the
// cloud). It does not wait.
func (d *Deployer[G]) Notify() {
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

// Run asks the control plane for the current deployment at once, then
// every Interval and on Notify, and applies each new one.
func (d *Deployer[G]) Run(ctx context.Context) {
	for {
		if err := d.poll(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("cannot check for deployments; will try again", "retry_in", d.o.Interval, "error", err)
		}
		timer := time.NewTimer(d.o.Interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-d.notify:
			timer.Stop()
		}
	}
}

// poll handles the current deployment if it is new.
func (d *Deployer[G]) poll(ctx context.Context) error {
	if d.state.DeploymentId != "" && !d.state.Reported && d.state.Status != controlplane.StatusInProgress {
		d.report(ctx)
	}
	ref, err := d.o.Source.CurrentDeployment(ctx)
	if errors.Is(err, controlplane.ErrNoDeployment) {
		return nil
	}
	if err != nil {
		return err
	}
	if ref == d.state.DeploymentRef {
		return nil
	}
	start := time.Now()
	log := d.log.With("group", ref.GroupId, "deployment", ref.DeploymentId)
	log.Info("deployment received")
	if err := d.o.Source.UpdateDeploymentStatus(ctx, ref, d.o.CoreARN, controlplane.StatusInProgress, ""); err != nil {
		log.Warn("could not report InProgress", "error", err)
	}
	err = d.apply(ctx, ref)
	if err != nil && ctx.Err() != nil {
		return err // stopping: the deployment is taken up again at the next start
	}
	var transient *transientError
	if errors.As(err, &transient) {
		return err
	}
	d.state = record{DeploymentRef: ref, Status: controlplane.StatusSuccess, At: time.Now().UTC()}
	if err != nil {
		d.state.Status, d.state.Message = controlplane.StatusFailure, err.Error()
		log.Error("deployment refused; the running group is unchanged", "error", err)
	} else {
		log.Info("deployment applied", "took", time.Since(start).Round(time.Microsecond))
	}
	var then func()
	if err == nil && d.o.Pending != nil {
		if msg, f := d.o.Pending(ref); msg != "" {
			d.state.Status, d.state.Message, then = controlplane.StatusInProgress, msg, f
			log.Info("deployment applied; it completes later", "status", msg)
		}
	}
	if err := d.save(); err != nil {
		log.Error("could not record the deployment's outcome", "error", err)
	}
	d.report(ctx)
	if then != nil {
		then()
	}
	return nil
}

// transientError is a failure worth trying again (the control plane did
// not answer), as opposed to a deployment that is wrong.
type transientError struct{ err error }

// Retry marks err as worth trying again (the control plane did not
// answer): the deployment is not failed, and is taken up at the next poll.
func Retry(err error) error { return &transientError{err} }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// apply fetches, checks, persists and activates one deployment.
func (d *Deployer[G]) apply(ctx context.Context, ref controlplane.DeploymentRef) error {
	data, err := d.o.Source.GetDeployment(ctx, ref)
	if err != nil {
		if controlplane.Refused(err) || errors.Is(err, controlplane.ErrTooLarge) {
			return fmt.Errorf("deploy: fetch: %w", err)
		}
		return &transientError{fmt.Errorf("deploy: fetch: %w", err)}
	}
	g, err := d.o.Check(ref, data)
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	commit, abort := func() {}, func() {}
	if d.o.Prepare != nil {
		c, a, err := d.o.Prepare(ctx, ref, data, g)
		if err != nil {
			var transient *transientError
			if errors.As(err, &transient) {
				return err
			}
			return fmt.Errorf("deploy: %w", err)
		}
		commit, abort = c, a
	}
	old, err := os.ReadFile(d.o.GroupPath)
	if err != nil {
		abort()
		return fmt.Errorf("deploy: read the running group: %w", err)
	}
	if err := atomicfile.WriteFile(d.o.GroupPath, data, 0o644); err != nil {
		abort()
		return fmt.Errorf("deploy: write %s: %w", d.o.GroupPath, err)
	}
	if err := d.o.Activate(g); err != nil {
		if rerr := atomicfile.WriteFile(d.o.GroupPath, old, 0o644); rerr != nil {
			d.log.Error("could not restore the previous group.json", "path", d.o.GroupPath, "error", rerr)
		}
		abort()
		return fmt.Errorf("deploy: activate: %w", err)
	}
	commit()
	return nil
}

// report sends the recorded outcome to the control plane.
func (d *Deployer[G]) report(ctx context.Context) {
	err := d.o.Source.UpdateDeploymentStatus(ctx, d.state.DeploymentRef, d.o.CoreARN, d.state.Status, d.state.Message)
	if err != nil {
		d.log.Warn("could not report the deployment's outcome; will try again", "deployment", d.state.DeploymentId,
			"status", d.state.Status, "error", err)
		return
	}
	d.state.Reported = true
	if err := d.save(); err != nil {
		d.log.Error("could not record the deployment's outcome", "error", err)
	}
}

func (d *Deployer[G]) save() error {
	data, err := json.MarshalIndent(d.state, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(d.o.StatePath, append(data, '\n'), 0o644)
}
