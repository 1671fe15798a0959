package broker

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eclipse/paho.golang/packets"
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
	conn, err := tls.Dial("tcp", f.broker.Addr().String(), &tls.Config{
		RootCAs: f.pool, ServerName: "localhost", Certificates: []tls.Certificate{f.certs[name]},
	})
	if err != nil {
		tb.Fatal(err)
	}
	c := packets.NewControlPacket(packets.CONNECT).Content.(*packets.Connect)
	c.ClientID, c.CleanStart, c.KeepAlive, c.ProtocolVersion, c.ProtocolName = name, true, 300, 5, "MQTT"
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
