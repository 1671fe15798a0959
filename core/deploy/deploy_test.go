package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/controlplane"
)

// plane is a control plane in memory: the current deployment, the
// documents, and the statuses the core reported. Errors can be set per
// call to play an outage.
type plane struct {
	mu       sync.Mutex
	current  controlplane.DeploymentRef
	docs     map[string][]byte
	statuses []string
	down     bool
	// statusDown refuses status reports only.
	statusDown bool
	fetchErr   error
}

func (p *plane) CurrentDeployment(context.Context) (controlplane.DeploymentRef, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return controlplane.DeploymentRef{}, errors.New("connection refused")
	}
	if p.current.DeploymentId == "" {
		return controlplane.DeploymentRef{}, controlplane.ErrNoDeployment
	}
	return p.current, nil
}

func (p *plane) GetDeployment(_ context.Context, ref controlplane.DeploymentRef) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fetchErr != nil {
		return nil, p.fetchErr
	}
	return p.docs[ref.DeploymentId], nil
}

func (p *plane) UpdateDeploymentStatus(_ context.Context, ref controlplane.DeploymentRef, _, status, msg string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down || p.statusDown {
		return errors.New("connection refused")
	}
	p.statuses = append(p.statuses, ref.DeploymentId+":"+status+":"+msg)
	return nil
}

func (p *plane) deploy(id, doc string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.docs == nil {
		p.docs = map[string][]byte{}
	}
	p.docs[id] = []byte(doc)
	p.current = controlplane.DeploymentRef{GroupId: "g1", DeploymentId: id}
}

func (p *plane) reported() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.statuses...)
}

// fixture runs a Deployer whose groups are strings: "bad..." fails
// Check, "inert..." fails Activate.
type fixture struct {
	dir    string
	plane  *plane
	mu     sync.Mutex
	active string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{dir: t.TempDir(), plane: &plane{}, active: "v0"}
	if err := os.WriteFile(f.groupPath(), []byte("v0"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) groupPath() string { return filepath.Join(f.dir, "group.json") }

func (f *fixture) run(t *testing.T) (stop func()) {
	t.Helper()
	d, err := New(Options[string]{
		Source: f.plane, CoreARN: "arn:aws:iot:us-east-1:000000000000:thing/gw",
		GroupPath: f.groupPath(), StatePath: filepath.Join(f.dir, "state.json"),
		Check: func(_ controlplane.DeploymentRef, data []byte) (string, error) {
			if strings.HasPrefix(string(data), "bad") {
				return "", errors.New("GroupId: not this group")
			}
			return string(data), nil
		},
		Activate: func(g string) error {
			if strings.HasPrefix(g, "inert") {
				return errors.New("the broker refused it")
			}
			f.mu.Lock()
			f.active = g
			f.mu.Unlock()
			return nil
		},
		Interval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func (f *fixture) activeGroup() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %s", what)
		}
	}
}

func fileIs(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s = %q (%v); want %q", filepath.Base(path), got, err, want)
	}
}

func TestAppliesAndReports(t *testing.T) {
	f := newFixture(t)
	f.plane.deploy("d1", "v1")
	f.run(t)
	waitFor(t, "Success not reported", func() bool { return len(f.plane.reported()) >= 2 })
	if got := f.plane.reported(); got[0] != "d1:InProgress:" || got[1] != "d1:Success:" {
		t.Errorf("reported %q; want InProgress then Success", got)
	}
	fileIs(t, f.groupPath(), "v1")
	if f.activeGroup() != "v1" {
		t.Errorf("active group %q", f.activeGroup())
	}
}

func TestRefusedDeploymentsChangeNothing(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"check fails", "bad group", "not this group"},
		{"activate fails", "inert group", "the broker refused it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.plane.deploy("d1", tc.doc)
			f.run(t)
			waitFor(t, "Failure not reported", func() bool { return len(f.plane.reported()) >= 2 })
			if got := f.plane.reported()[1]; !strings.HasPrefix(got, "d1:Failure:") || !strings.Contains(got, tc.want) {
				t.Errorf("reported %q; want a Failure naming %q", got, tc.want)
			}
			fileIs(t, f.groupPath(), "v0")
			if f.activeGroup() != "v0" {
				t.Errorf("active group %q; want v0", f.activeGroup())
			}
		})
	}
}

func TestOversizedDeploymentIsFailure(t *testing.T) {
	f := newFixture(t)
	f.plane.deploy("d1", "v1")
	f.plane.fetchErr = fmt.Errorf("GetDeployment: %w: more than 1048576 bytes", controlplane.ErrTooLarge)
	f.run(t)
	waitFor(t, "no Failure for an oversized deployment", func() bool {
		r := f.plane.reported()
		return len(r) >= 2 && strings.HasPrefix(r[1], "d1:Failure:") && strings.Contains(r[1], "too large")
	})
	fileIs(t, f.groupPath(), "v0")
}

func TestFetchRefusedIsFailureButOutageIsRetried(t *testing.T) {
	f := newFixture(t)
	f.plane.deploy("d1", "v1")
	f.plane.fetchErr = errors.New("connection reset")
	f.run(t)
	waitFor(t, "no InProgress", func() bool { return len(f.plane.reported()) >= 2 })
	for _, r := range f.plane.reported() {
		if !strings.HasSuffix(r, ":InProgress:") {
			t.Fatalf("an outage was reported as %q", r)
		}
	}
	f.plane.mu.Lock()
	f.plane.fetchErr = &controlplane.APIError{Call: "GetDeployment", Status: 403, Message: "not authorized"}
	f.plane.mu.Unlock()
	waitFor(t, "no Failure after a refusal", func() bool {
		r := f.plane.reported()
		return strings.HasPrefix(r[len(r)-1], "d1:Failure:")
	})
	fileIs(t, f.groupPath(), "v0")
}

func TestRestartDoesNotReapplyAndReportsLateOutcome(t *testing.T) {
	f := newFixture(t)
	f.plane.deploy("d1", "v1")
	stop := f.run(t)
	waitFor(t, "not applied", func() bool { return len(f.plane.reported()) >= 2 })
	stop()
	fileIs(t, f.groupPath(), "v1")

	// Applied again after a restart? The state file says d1 is done.
	f.mu.Lock()
	f.active = "restarted"
	f.mu.Unlock()
	stop = f.run(t)
	time.Sleep(100 * time.Millisecond)
	stop()
	if f.activeGroup() != "restarted" || len(f.plane.reported()) != 2 {
		t.Errorf("d1 was handled again after a restart: active %q, reports %q", f.activeGroup(), f.plane.reported())
	}

	// d2's outcome cannot be reported at first; it is reported later.
	f.plane.mu.Lock()
	f.plane.statusDown = true
	f.plane.mu.Unlock()
	f.plane.deploy("d2", "v2")
	f.run(t)
	waitFor(t, "d2 not applied", func() bool { return f.activeGroup() == "v2" })
	time.Sleep(100 * time.Millisecond)
	f.plane.mu.Lock()
	f.plane.statusDown = false
	f.plane.mu.Unlock()
	waitFor(t, "d2's outcome not reported after the control plane came back", func() bool {
		r := f.plane.reported()
		return r[len(r)-1] == "d2:Success:"
	})
}
