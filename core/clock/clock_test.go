package clock

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// startNTP starts a fake NTP server answering with the time plus skew
// (or never, answer=false) and returns its "host:port".
func startNTP(t *testing.T, skew time.Duration, answer bool) string {
	s := testtool.StartNTP(t, skew)
	s.SetSilent(!answer)
	return s.Addr
}

// setter records what the Clock would have set the system clock to.
type setter struct {
	mu  sync.Mutex
	set []time.Time
}

func (s *setter) Set(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set = append(s.set, t)
	return nil
}

func (s *setter) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.set...)
}

func near(got, want time.Time, within time.Duration) bool { return got.Sub(want).Abs() <= within }

func TestNTP(t *testing.T) {
	hour := time.Hour
	tests := []struct {
		name     string
		servers  func(t *testing.T) []string
		setClock bool
		floor    time.Duration // from now; 0 for none
		wantErr  string
		wantSrv  int // index of the server that should answer
		wantStep time.Duration
	}{
		{name: "steps the clock by the server's offset", setClock: true, wantStep: hour,
			servers: func(t *testing.T) []string { return []string{startNTP(t, hour, true)} }},
		{name: "steps it back too", setClock: true, wantStep: -hour,
			servers: func(t *testing.T) []string { return []string{startNTP(t, -hour, true)} }},
		{name: "measures only without setClock",
			servers: func(t *testing.T) []string { return []string{startNTP(t, hour, true)} }},
		{name: "leaves a small offset alone", setClock: true,
			servers: func(t *testing.T) []string { return []string{startNTP(t, 10*time.Millisecond, true)} }},
		{name: "a silent server is skipped", setClock: true, wantSrv: 1, wantStep: hour,
			servers: func(t *testing.T) []string { return []string{startNTP(t, 0, false), startNTP(t, hour, true)} }},
		{name: "a time before the floor is refused", setClock: true, floor: 2 * hour, wantErr: "before the image's build time",
			servers: func(t *testing.T) []string { return []string{startNTP(t, hour, true)} }},
		{name: "no source at all", setClock: true, wantErr: "no time source configured",
			servers: func(*testing.T) []string { return nil }},
		{name: "nobody answers", setClock: true, wantErr: "no time source answered",
			servers: func(t *testing.T) []string { return []string{startNTP(t, 0, false)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := tt.servers(t)
			s := &setter{}
			o := Options{NTPServers: servers, SetClock: tt.setClock, Set: s.Set, Timeout: 500 * time.Millisecond}
			if tt.floor != 0 {
				o.Floor = time.Now().Add(tt.floor)
			}
			res, err := New(o).Sync(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Sync: err = %v, want one saying %q", err, tt.wantErr)
				}
				if len(s.times()) != 0 {
					t.Fatalf("the clock was set to %v after an error", s.times())
				}
				return
			}
			if err != nil {
				t.Fatalf("Sync: %v", err)
			}
			if res.Source != "ntp" || res.Server != servers[tt.wantSrv] {
				t.Errorf("answered by %s %s, want ntp %s", res.Source, res.Server, servers[tt.wantSrv])
			}
			if tt.wantStep == 0 {
				if res.Stepped || len(s.times()) != 0 {
					t.Fatalf("the clock was stepped (%v) though it should be left alone; offset %v", s.times(), res.Offset)
				}
				if !tt.setClock && !near(time.Now().Add(res.Offset), time.Now().Add(hour), time.Second) {
					t.Errorf("measured offset %v, want about %v", res.Offset, hour)
				}
				return
			}
			set := s.times()
			if !res.Stepped || len(set) != 1 {
				t.Fatalf("stepped=%v, set %v; want one step", res.Stepped, set)
			}
			if !near(set[0], time.Now().Add(tt.wantStep), time.Second) {
				t.Errorf("clock set to %v, want about now%+v", set[0], tt.wantStep)
			}
		})
	}
}

// testCA is a root and a server certificate for 127.0.0.1 valid from
// notBefore for a day.
type testCA struct {
	roots  *x509.CertPool
	server tls.Certificate
}

func newTestCA(t *testing.T, notBefore time.Time) testCA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: notBefore.Add(-time.Hour), NotAfter: notBefore.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "control plane"},
		NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testCA{roots: pool, server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// startControlPlane serves HTTPS on 127.0.0.1 with ca's server
// certificate and answers every request with Date: date.
func startControlPlane(t *testing.T, ca testCA, date time.Time) (host string, port int) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", date.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusForbidden) // any answer carries a Date
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	h, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ = strconv.Atoi(p)
	return h, port
}

func TestControlPlaneDate(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name      string
		certFrom  time.Duration // the server certificate's NotBefore, from now
		date      time.Duration // the Date the server sends, from now
		host      string        // the name asked for; "" for 127.0.0.1
		otherRoot bool
		floor     time.Duration
		ntp       bool // an NTP server answers first
		wantErr   string
	}{
		{name: "a clock behind the certificate's validity is set from the Date", certFrom: 2 * time.Hour, date: 3 * time.Hour},
		{name: "a clock ahead is set back", certFrom: -12 * time.Hour, date: -2 * time.Hour},
		{name: "a Date outside the certificate's validity is refused", certFrom: 2 * time.Hour, date: 30 * time.Hour,
			wantErr: "not valid at the Date"},
		{name: "a Date before the floor is refused", certFrom: -time.Hour, date: time.Hour, floor: 2 * time.Hour,
			wantErr: "before the image's build time"},
		{name: "an unknown root is refused", certFrom: 2 * time.Hour, date: 3 * time.Hour, otherRoot: true,
			wantErr: "certificate signed by unknown authority"},
		{name: "a wrong name is refused", certFrom: 2 * time.Hour, date: 3 * time.Hour, host: "localhost.invalid",
			wantErr: "certificate"},
		{name: "NTP comes first", certFrom: 2 * time.Hour, date: 3 * time.Hour, ntp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := newTestCA(t, now.Add(tt.certFrom))
			host, port := startControlPlane(t, ca, now.Add(tt.date))
			roots := ca.roots
			if tt.otherRoot {
				roots = newTestCA(t, now).roots
			}
			cp := &ControlPlane{Host: host, Port: port, Roots: roots}
			if tt.host != "" {
				cp.Host = tt.host
				dial := net.JoinHostPort(host, strconv.Itoa(port))
				// The name is only what the certificate must carry; dial
				// the server anyway.
				c := New(Options{ControlPlane: cp, SetClock: true})
				c.client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, dial)
				}
				if _, err := c.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Sync: err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			s := &setter{}
			o := Options{ControlPlane: cp, SetClock: true, Set: s.Set}
			if tt.ntp {
				o.NTPServers = []string{startNTP(t, 5*time.Hour, true)}
			}
			if tt.floor != 0 {
				o.Floor = now.Add(tt.floor)
			}
			res, err := New(o).Sync(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Sync: err = %v, want one saying %q", err, tt.wantErr)
				}
				if len(s.times()) != 0 {
					t.Fatalf("the clock was set to %v after an error", s.times())
				}
				return
			}
			if err != nil {
				t.Fatalf("Sync: %v", err)
			}
			want, source := now.Add(tt.date), "control-plane"
			if tt.ntp {
				want, source = time.Now().Add(5*time.Hour), "ntp"
			}
			set := s.times()
			if res.Source != source || !res.Stepped || len(set) != 1 {
				t.Fatalf("source %s, stepped %v, set %v; want one step from %s", res.Source, res.Stepped, set, source)
			}
			if !near(set[0], want, 3*time.Second) {
				t.Errorf("clock set to %v, want about %v", set[0], want)
			}
		})
	}
}

func TestRunRaisesToFloorThenSyncs(t *testing.T) {
	s := &setter{}
	floor := time.Now().Add(time.Hour)
	var buf testtool.Buffer
	steps := make(chan time.Duration, 4)
	c := New(Options{
		NTPServers: []string{startNTP(t, 2*time.Hour, true)},
		SetClock:   true, Floor: floor, Set: s.Set, Timeout: time.Second,
		OnStep: func(d time.Duration) { steps <- d },
		Log:    testLogger(&buf),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case d := <-steps:
		if d < time.Hour {
			t.Errorf("stepped by %v, want about 2h", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no step within 30s; log:\n%s", buf.String())
	}
	set := s.times()
	if len(set) < 2 || !set[0].Equal(floor) {
		t.Fatalf("clock set to %v; want the floor %v first, then the NTP time", set, floor)
	}
	if !testtool.Poll(10*time.Second, func() bool { return strings.Contains(buf.String(), "clock synchronised") }) {
		t.Fatalf("no 'clock synchronised' in the log:\n%s", buf.String())
	}
	for _, want := range []string{"clock not synchronised yet", "raised to it", "source=ntp", "stepped=true"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, buf.String())
		}
	}
}

func testLogger(buf *testtool.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestParseBuildTime(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "", want: time.Time{}},
		{in: "1796490670\n", want: time.Unix(1796490670, 0)},
		{in: "yesterday", wantErr: true},
		{in: "-5", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseBuildTime(tt.in)
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("ParseBuildTime(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestSyncStopsWithItsContext: a query to a silent server does not hold
// up a stopping core for the whole timeout.
func TestSyncStopsWithItsContext(t *testing.T) {
	c := New(Options{NTPServers: []string{startNTP(t, 0, false)}, SetClock: true, Set: (&setter{}).Set, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.Sync(ctx); done <- err }()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Sync succeeded against a silent server")
		}
	case <-time.After(testtool.Timeout):
		t.Fatal("Sync did not return when its context ended")
	}
}
