package connectivity

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/controlplane"
)

func TestAddresses(t *testing.T) {
	for _, tc := range []struct {
		bind string
		want []string
	}{
		{"127.0.0.1", []string{"127.0.0.1"}},
		{"::1", []string{"::1"}},
		{"192.0.2.7", []string{"192.0.2.7"}},
	} {
		got, err := Addresses(tc.bind)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Addresses(%q) = %v, %v; want %v", tc.bind, got, err, tc.want)
		}
	}
	for _, bind := range []string{"", "0.0.0.0", "::"} {
		got, err := Addresses(bind)
		if err != nil || len(got) == 0 {
			t.Fatalf("Addresses(%q) = %v, %v; want the machine's addresses", bind, got, err)
		}
		for _, a := range got {
			if a == "0.0.0.0" || a == "::" {
				t.Errorf("Addresses(%q) lists the unspecified address", bind)
			}
		}
	}
}

func TestStatic(t *testing.T) {
	eps, err := Static([]string{"192.0.2.1:8883", "gw.example:443", "[2001:db8::1]:8883"})
	if err != nil {
		t.Fatal(err)
	}
	want := []controlplane.Endpoint{
		{Id: "MANUAL_0", HostAddress: "192.0.2.1", PortNumber: 8883},
		{Id: "MANUAL_1", HostAddress: "gw.example", PortNumber: 443},
		{Id: "MANUAL_2", HostAddress: "2001:db8::1", PortNumber: 8883},
	}
	if !slices.Equal(eps, want) {
		t.Errorf("Static = %v, want %v", eps, want)
	}
	if got := Hosts(append(eps, eps[0])); !slices.Equal(got, []string{"192.0.2.1", "gw.example", "2001:db8::1"}) {
		t.Errorf("Hosts = %v", got)
	}
}

// TestReporter: reported at start, again only when the addresses change,
// and retried after a failure.
func TestReporter(t *testing.T) {
	var mu sync.Mutex
	addrs := []string{"10.0.0.1"}
	fail := 1
	var sent, reported [][]controlplane.Endpoint
	r := &Reporter{
		Endpoints: func() ([]controlplane.Endpoint, error) {
			mu.Lock()
			defer mu.Unlock()
			return Endpoints(addrs, 8883), nil
		},
		Update: func(_ context.Context, eps []controlplane.Endpoint) error {
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, eps)
			if fail > 0 {
				fail--
				return errors.New("connection refused")
			}
			return nil
		},
		Reported: func(eps []controlplane.Endpoint) {
			mu.Lock()
			defer mu.Unlock()
			reported = append(reported, eps)
		},
		Interval: 50 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	wait := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			got := len(reported)
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d reports, want %d", got, n)
			}
		}
	}
	wait(1) // after one failure and a retry 1 s later
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	if len(sent) != 2 || len(reported) != 1 {
		t.Errorf("unchanged addresses: %d sent, %d reported; want 2 (one failed) and 1", len(sent), len(reported))
	}
	addrs = []string{"10.0.0.2", "192.0.2.5"}
	mu.Unlock()
	wait(2)
	mu.Lock()
	defer mu.Unlock()
	want := []controlplane.Endpoint{
		{Id: "AUTOIP_10.0.0.2_0", HostAddress: "10.0.0.2", PortNumber: 8883},
		{Id: "AUTOIP_192.0.2.5_1", HostAddress: "192.0.2.5", PortNumber: 8883},
	}
	if !slices.Equal(reported[1], want) {
		t.Errorf("after the change reported %v, want %v", reported[1], want)
	}
}
