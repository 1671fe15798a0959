package broker

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// TestIdleConnectionMemory connects GGCORE_MEMORY_DEVICES (default: the
// test is skipped) idle mutual-TLS MQTT 5 devices and reports the heap
// and stack memory they cost the process, client side included; with
// GGCORE_MEMORY_PUBLISH=1 each device first publishes one QoS 1 message
// (the broker's goroutine for it then grew through PUBLISH handling).
// Stacks are reported a device, after one collection and after six (a
// collection halves an idle goroutine's stack at most once; 16 KiB for
// the goroutine reading the connection and 4 KiB for mochi's writer
// stay). With GGCORE_MEMORY_STACKS=1 it prints every goroutine's stack
// once the devices are idle (what the readers are parked in). With
// GGCORE_MEMORY_PROFILE=FILE it writes
// a heap profile to FILE (look at the broker's allocation sites: mochi,
// crypto/tls server, core/broker).
func TestIdleConnectionMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GGCORE_MEMORY_DEVICES"))
	if n <= 0 {
		t.Skip("set GGCORE_MEMORY_DEVICES to run")
	}
	publish := os.Getenv("GGCORE_MEMORY_PUBLISH") == "1"
	if os.Getenv("GGCORE_MEMORY_PROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("dev%d", i)
	}
	f := newTestFleet(t, names...)
	f.start(f.group(sub("s1", "dev0", "t", "dev1")))
	before := memNow()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, name := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, err := tls.Dial("tcp", f.broker.Addr().String(), &tls.Config{
				RootCAs: f.pool, ServerName: "localhost", Certificates: []tls.Certificate{f.certs[name]},
			})
			if err != nil {
				t.Error(err)
				return
			}
			c := packets.NewControlPacket(packets.CONNECT).Content.(*packets.Connect)
			c.ClientID, c.CleanStart, c.KeepAlive, c.ProtocolVersion, c.ProtocolName = name, true, 600, 5, "MQTT"
			if _, err := c.WriteTo(conn); err != nil {
				t.Error(err)
				return
			}
			if p, err := packets.ReadPacket(conn); err != nil || p.Type != packets.CONNACK {
				t.Errorf("connack: %v %v", p, err)
				return
			}
			conns[i] = conn
			if !publish {
				return
			}
			pub := packets.NewControlPacket(packets.PUBLISH).Content.(*packets.Publish)
			pub.Topic, pub.QoS, pub.PacketID, pub.Payload = "t", 1, 1, []byte("hello")
			if _, err := pub.WriteTo(conn); err != nil {
				t.Error(err)
				return
			}
			if p, err := packets.ReadPacket(conn); err != nil || p.Type != packets.PUBACK {
				t.Errorf("puback: %v %v", p, err)
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	runtime.GC()
	afterOne := stackBytes()
	after := memNow()
	t.Logf("%d devices: heap in use +%.1f MiB, stacks +%.1f MiB (%.1f KiB a device; %.1f KiB after one collection), goroutines %d (both sides in one process)",
		n, float64(after.HeapInuse-before.HeapInuse)/(1<<20), float64(after.StackInuse-before.StackInuse)/(1<<20),
		float64(after.StackInuse-before.StackInuse)/float64(n)/(1<<10), float64(afterOne-before.StackInuse)/float64(n)/(1<<10),
		runtime.NumGoroutine())
	if os.Getenv("GGCORE_MEMORY_STACKS") == "1" {
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
	}
	if p := os.Getenv("GGCORE_MEMORY_PROFILE"); p != "" {
		out, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// stackBytes is the memory of goroutine stacks now.
func stackBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func memNow() runtime.MemStats {
	for range 6 {
		runtime.GC() // each may halve an idle goroutine's stack
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}
