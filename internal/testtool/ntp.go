package testtool

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// ntpEpoch is where NTP timestamps count from.
var ntpEpoch = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

// NTPServer is a stratum-1 NTPv4 server on 127.0.0.1 for tests: it
// answers each 48-byte request with this machine's time plus a skew, and
// can be told to stay silent. Stopped when the test ends.
type NTPServer struct {
	// Addr is its "127.0.0.1:port"; Port its UDP port.
	Addr string
	Port int

	skew     atomic.Int64 // time.Duration
	silent   atomic.Bool
	requests atomic.Int64
}

// StartNTP starts an NTPServer answering with the time plus skew.
func StartNTP(t testing.TB, skew time.Duration) *NTPServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ntp server: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &NTPServer{Addr: conn.LocalAddr().String(), Port: conn.LocalAddr().(*net.UDPAddr).Port}
	s.skew.Store(int64(skew))
	go s.serve(conn)
	return s
}

// SetSilent makes the server read requests without answering (true) or
// answer them again (false).
func (s *NTPServer) SetSilent(silent bool) { s.silent.Store(silent) }

// Requests is how many requests the server has read.
func (s *NTPServer) Requests() int { return int(s.requests.Load()) }

func (s *NTPServer) serve(conn net.PacketConn) {
	buf := make([]byte, 512)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		s.requests.Add(1)
		if n < 48 || s.silent.Load() {
			continue
		}
		skew := time.Duration(s.skew.Load())
		recv := time.Now().Add(skew)
		out := make([]byte, 48)
		out[0] = 0<<6 | 4<<3 | 4                                                   // no leap second warning, version 4, mode server
		out[1] = 1                                                                 // stratum 1
		out[2] = 4                                                                 // poll 2^4 s
		out[3] = 0xec                                                              // precision 2^-20 s
		copy(out[12:16], "TEST")                                                   // reference ID
		binary.BigEndian.PutUint64(out[16:], ntpTimestamp(recv.Add(-time.Second))) // reference time
		copy(out[24:32], buf[40:48])                                               // origin: the request's transmit time
		binary.BigEndian.PutUint64(out[32:], ntpTimestamp(recv))
		binary.BigEndian.PutUint64(out[40:], ntpTimestamp(time.Now().Add(skew)))
		conn.WriteTo(out, from)
	}
}

// ntpTimestamp is t as NTP's 32.32 fixed-point seconds since 1900.
func ntpTimestamp(t time.Time) uint64 {
	d := t.Sub(ntpEpoch)
	return uint64(d/time.Second)<<32 | uint64(d%time.Second)<<32/uint64(time.Second)
}
