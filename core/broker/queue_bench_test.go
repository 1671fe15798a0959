package broker

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/ggcore/ggcore/core/router"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/mochiext"
)

// rawConnect opens a TLS connection as name and completes CONNECT with
// MQTT 5; the caller owns the connection.
func (f *testFleet) rawConnect(tb testing.TB, name string) net.Conn {
	tb.Helper()
	return f.rawConnectWith(tb, name, nil)
}

// rawConnectWith is rawConnect with CONNECT properties.
func (f *testFleet) rawConnectWith(tb testing.TB, name string, props *packets.Properties) net.Conn {
	tb.Helper()
	return f.rawConnectTo(tb, f.broker.Addr().String(), name, props)
}

// rawConnectTo is rawConnectWith to the broker at addr.
func (f *testFleet) rawConnectTo(tb testing.TB, addr, name string, props *packets.Properties) net.Conn {
	tb.Helper()
	return f.rawConnectSession(tb, addr, name, true, props)
}

// rawConnectSession is rawConnectTo that resumes the session unless
// clean.
func (f *testFleet) rawConnectSession(tb testing.TB, addr, name string, clean bool, props *packets.Properties) net.Conn {
	tb.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{
		RootCAs: f.pool, ServerName: "localhost", Certificates: []tls.Certificate{f.certs[name]},
	})
	if err != nil {
		tb.Fatal(err)
	}
	c := packets.NewControlPacket(packets.CONNECT).Content.(*packets.Connect)
	c.ClientID, c.CleanStart, c.KeepAlive, c.ProtocolVersion, c.ProtocolName = name, clean, 300, 5, "MQTT"
	c.Properties = props
	if _, err := c.WriteTo(conn); err != nil {
		tb.Fatal(err)
	}
	if p, err := packets.ReadPacket(conn); err != nil || p.Type != packets.CONNACK {
		tb.Fatalf("connack: %v %v", p, err)
	}
	return conn
}

// BenchmarkFanIn measures the broker alone: publishers that write
// pre-encoded QoS 0 PUBLISHes as fast as TLS takes them, one subscriber
// that only counts. b.N is the number of deliveries.
func BenchmarkFanIn(b *testing.B) {
	const pubs = 4
	names := []string{"sub"}
	for i := range pubs {
		names = append(names, fmt.Sprintf("pub%d", i))
	}
	// The fleet helpers take a *testing.T; this one only collects their
	// cleanups, which the defer below replaces.
	f := newTestFleet(&testing.T{}, names...)
	subsTable := f.group(sub("s0", "pub0", "bench/#", "sub"), sub("s1", "pub1", "bench/#", "sub"),
		sub("s2", "pub2", "bench/#", "sub"), sub("s3", "pub3", "bench/#", "sub"))
	f.start(subsTable)
	defer f.broker.Close()
	sc := f.rawConnect(b, "sub")
	defer sc.Close()
	s := packets.NewControlPacket(packets.SUBSCRIBE).Content.(*packets.Subscribe)
	s.PacketID = 1
	s.Subscriptions = []packets.SubOptions{{Topic: "bench/#", QoS: 0}}
	if _, err := s.WriteTo(sc); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReaderSize(sc, 64<<10)
	if p, err := packets.ReadPacket(r); err != nil || p.Type != packets.SUBACK {
		b.Fatalf("suback: %v %v", p, err)
	}
	var pk bytes.Buffer
	p := packets.NewControlPacket(packets.PUBLISH).Content.(*packets.Publish)
	p.Topic, p.Payload = "bench/x", make([]byte, 256)
	if _, err := p.WriteTo(&pk); err != nil {
		b.Fatal(err)
	}
	per := b.N/pubs + 1
	want := per * pubs
	b.SetBytes(int64(pk.Len()))
	b.ResetTimer()
	// Publishers stay at most 4,000 messages ahead of the subscriber, so
	// that its queue never overflows.
	var sent, got atomic.Int64
	var wg sync.WaitGroup
	for i := range pubs {
		c := f.rawConnect(b, fmt.Sprintf("pub%d", i))
		defer c.Close()
		batch := bytes.Repeat(pk.Bytes(), 64)
		wg.Go(func() {
			for done := 0; done < per; done += 64 {
				for sent.Load()-got.Load() > 4000 {
					runtime.Gosched()
				}
				n := min(64, per-done)
				sent.Add(int64(n))
				if _, err := c.Write(batch[:n*pk.Len()]); err != nil {
					return
				}
			}
		})
	}
	for got.Load() < int64(want) {
		if _, err := packets.ReadPacket(r); err != nil {
			b.Fatalf("after %d of %d: %v", got.Load(), want, err)
		}
		got.Add(1)
	}
	b.StopTimer()
	wg.Wait()
}

// BenchmarkQoS1 measures QoS 1 delivery through the broker as ggbench
// drives it: publishers that keep up to 16 PUBLISHes unacknowledged,
// subscribers that acknowledge each message as it arrives (one write per
// PUBACK, as paho does). b.N is the number of deliveries. The "mochi"
// runs serve the same load with ggcore's engine bare (as ggbench's
// serve-mochi does: same TLS, limits, no ggcore hooks), for comparison.
func BenchmarkQoS1(b *testing.B) {
	for _, sc := range []struct {
		name       string
		pubs, subs int
	}{{"fanin", 4, 1}, {"fanout", 1, 4}, {"mesh", 4, 4}} {
		b.Run(sc.name, func(b *testing.B) { benchQoS1(b, sc.pubs, sc.subs, qos1Broker) })
		b.Run(sc.name+"-mochi", func(b *testing.B) { benchQoS1(b, sc.pubs, sc.subs, qos1BareMochi) })
		b.Run(sc.name+"-stored-elsewhere", func(b *testing.B) { benchQoS1(b, sc.pubs, sc.subs, qos1StoredElsewhere) })
	}
}

// qos1Setup is what serves BenchmarkQoS1's load.
type qos1Setup int

const (
	qos1Broker    qos1Setup = iota // ggcore's broker, no session store
	qos1BareMochi                  // mochi alone (startBareMochi)
	// qos1StoredElsewhere: ggcore's broker with a session store that
	// keeps one connected session, subscribed to a topic the load does not
	// publish on: the load's publishes reach no stored session.
	qos1StoredElsewhere
)

// startBareMochi serves f's certificates with mochi alone, configured as
// ggbench's serve-mochi does; it returns the address.
func startBareMochi(tb testing.TB, f *testFleet) string {
	tb.Helper()
	cfg, err := tlsconf.Server(tlsconf.ServerOptions{
		Profile: tlsconf.Strict, ClientCAs: f.pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &f.server, nil },
	})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	lim := DefaultLimits()
	caps := MochiCapabilities(lim)
	caps.MaximumClientWritesPending = int32(lim.QueueMessages)
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		tb.Fatal(err)
	}
	if err := srv.AddListener(mochiext.NewTLSListener("mqtts", ln, cfg, nil)); err != nil {
		tb.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func benchQoS1(b *testing.B, pubs, subs int, setup qos1Setup) {
	bare := setup == qos1BareMochi
	const window = 16
	var names []string
	var routes []router.Subscription
	for i := range pubs {
		names = append(names, fmt.Sprintf("pub%d", i))
		for j := range subs {
			routes = append(routes, sub(fmt.Sprintf("s%d-%d", i, j), fmt.Sprintf("pub%d", i), fmt.Sprintf("bench/pub%d/#", i), fmt.Sprintf("sub%d", j)))
		}
	}
	for j := range subs {
		names = append(names, fmt.Sprintf("sub%d", j))
	}
	names = append(names, "keeper")
	routes = append(routes, sub("keep", "pub0", "elsewhere/#", "keeper"))
	f := newTestFleet(&testing.T{}, names...)
	addr := ""
	switch setup {
	case qos1BareMochi:
		addr = startBareMochi(b, f)
	case qos1StoredElsewhere:
		f.mustStartPersistent(f.group(routes...), Persistence{Path: filepath.Join(b.TempDir(), "sessions.db")})
		defer f.broker.Close()
		addr = f.broker.Addr().String()
		keeper, _ := f.connectSession("keeper", false)
		defer keeper.Disconnect()
		keeper.MustSubscribe(b, 1, "elsewhere/#")
	default:
		f.start(f.group(routes...))
		defer f.broker.Close()
		addr = f.broker.Addr().String()
	}
	per := b.N/(pubs*subs) + 1
	want := int64(per * pubs * subs)
	var got atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for j := range subs {
		c := f.rawConnectTo(b, addr, fmt.Sprintf("sub%d", j), nil)
		defer c.Close()
		s := packets.NewControlPacket(packets.SUBSCRIBE).Content.(*packets.Subscribe)
		s.PacketID = 1
		s.Subscriptions = []packets.SubOptions{{Topic: "bench/#", QoS: 1}}
		if _, err := s.WriteTo(c); err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReaderSize(c, 64<<10)
		if p, err := packets.ReadPacket(r); err != nil || p.Type != packets.SUBACK {
			b.Fatalf("suback: %v %v", p, err)
		}
		wg.Go(func() {
			ack := packets.NewControlPacket(packets.PUBACK).Content.(*packets.Puback)
			var buf bytes.Buffer
			for {
				p, err := packets.ReadPacket(r)
				if err != nil {
					return
				}
				if p.Type != packets.PUBLISH {
					continue
				}
				ack.PacketID = p.Content.(*packets.Publish).PacketID
				buf.Reset()
				_, _ = ack.WriteTo(&buf)
				if _, err := c.Write(buf.Bytes()); err != nil {
					return
				}
				if got.Add(1) == want {
					once.Do(func() { close(done) })
				}
			}
		})
	}
	b.SetBytes(256)
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range pubs {
		c := f.rawConnectTo(b, addr, fmt.Sprintf("pub%d", i), nil)
		defer c.Close()
		credit := make(chan struct{}, window)
		for range window {
			credit <- struct{}{}
		}
		go func() {
			r := bufio.NewReader(c)
			for {
				p, err := packets.ReadPacket(r)
				if err != nil {
					return
				}
				if p.Type == packets.PUBACK {
					credit <- struct{}{}
				}
			}
		}()
		go func() {
			p := packets.NewControlPacket(packets.PUBLISH).Content.(*packets.Publish)
			p.Topic, p.QoS, p.Payload = fmt.Sprintf("bench/pub%d/data", i), 1, make([]byte, 256)
			var buf bytes.Buffer
			for n := range per {
				<-credit
				p.PacketID = uint16(n%60000 + 1)
				buf.Reset()
				_, _ = p.WriteTo(&buf)
				if _, err := c.Write(buf.Bytes()); err != nil {
					return
				}
			}
		}()
	}
	// Bare mochi (v2.7) loses some QoS 1 deliveries under this load; its
	// run ends when deliveries stop for a second.
	start, last, lastGot := time.Now(), time.Now(), int64(0)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case now := <-tick.C:
			if n := got.Load(); n != lastGot {
				last, lastGot = now, n
			} else if bare && now.Sub(last) > time.Second {
				break wait
			} else if now.Sub(start) > 2*time.Minute {
				b.Fatalf("%d of %d delivered", n, want)
			}
		}
	}
	elapsed := time.Since(start)
	if got.Load() < want {
		elapsed = last.Sub(start)
		b.ReportMetric(float64(want-got.Load()), "lost")
	}
	b.StopTimer()
	n := got.Load()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	// On a shared machine the rate varies with the other load; the CPU
	// time the process (broker and clients) spent per delivery does less.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(n), "cpu-ns/msg")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
