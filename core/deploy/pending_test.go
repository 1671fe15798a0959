package deploy

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/controlplane"
)

// A deployment that completes later (an image update) is recorded and
// reported InProgress with Pending's message, then Pending's then runs;
// after a restart it is neither applied nor reported again (its final
// status comes from whoever completes it).
func TestPendingDeploymentStaysInProgress(t *testing.T) {
	f := newFixture(t)
	thens := make(chan string, 4)
	run := func() (stop func()) {
		d, err := New(Options[string]{
			Source: f.plane, CoreARN: "arn:aws:iot:us-east-1:000000000000:thing/gw",
			GroupPath: f.groupPath(), StatePath: filepath.Join(f.dir, "state.json"),
			Check:    func(_ controlplane.DeploymentRef, data []byte) (string, error) { return string(data), nil },
			Activate: func(string) error { return nil },
			Pending: func(ref controlplane.DeploymentRef) (string, func()) {
				return "rebooting into the new image", func() { thens <- ref.DeploymentId }
			},
			Interval: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { d.Run(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	f.plane.mu.Lock()
	f.plane.statusDown = true // the interim report is lost
	f.plane.mu.Unlock()
	f.plane.deploy("d1", "fw1")
	stop := run()
	select {
	case id := <-thens:
		if id != "d1" {
			t.Fatalf("then ran for %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pending's then did not run")
	}
	stop()
	f.plane.mu.Lock()
	f.plane.statusDown = false
	f.plane.mu.Unlock()
	stop = run()
	time.Sleep(200 * time.Millisecond)
	stop()
	if r := f.plane.reported(); len(r) != 0 {
		t.Errorf("reports after the restart: %q; want none (no re-apply, no stale InProgress)", r)
	}
	if len(thens) != 0 {
		t.Error("then ran again after the restart")
	}

	// Reported when the control plane answers.
	f.plane.deploy("d2", "fw2")
	stop = run()
	<-thens
	stop()
	want := []string{"d2:InProgress:", "d2:InProgress:rebooting into the new image"}
	if r := f.plane.reported(); len(r) != 2 || r[0] != want[0] || r[1] != want[1] {
		t.Errorf("reports %q; want %q", r, want)
	}
}
