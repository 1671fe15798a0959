package mochiext

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
)

func TestConnectTimedOut(t *testing.T) {
	deadline := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"CONNECT not read in time", fmt.Errorf("read connection: %w", deadline), true},
		{"keepalive expired later", deadline, false},
		{"CONNECT read failed otherwise", fmt.Errorf("read connection: %w", io.EOF), false},
		{"session ended", nil, false},
		{"other error", errors.New("read connection: protocol violation"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := connectTimedOut(tt.err); got != tt.want {
				t.Errorf("connectTimedOut(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// closeAll closes what the set holds and refuses what comes after.
func TestConnSetCloseAll(t *testing.T) {
	s := connSet{m: make(map[net.Conn]struct{})}
	kept, gone := net.Pipe()
	defer gone.Close()
	ended, endedPeer := net.Pipe()
	defer endedPeer.Close()
	if !s.add(kept) || !s.add(ended) {
		t.Fatal("add refused before closeAll")
	}
	s.remove(ended)
	s.closeAll()
	if _, err := kept.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("write to a remembered connection after closeAll: %v, want it closed", err)
	}
	go func() { _, _ = endedPeer.Read(make([]byte, 1)) }()
	if _, err := ended.Write([]byte("x")); err != nil {
		t.Errorf("a connection removed before closeAll was closed: %v", err)
	}
	late, latePeer := net.Pipe()
	defer late.Close()
	defer latePeer.Close()
	if s.add(late) {
		t.Error("add accepted a connection after closeAll")
	}
}
