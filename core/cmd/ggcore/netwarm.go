package main

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// errWarmUpOnly ends warmListen's socket before it is bound.
var errWarmUpOnly = errors.New("warm-up only")

// warmListen does, in the background and with nothing bound, the work a
// process's first TCP listen does once: the address's resolution, the
// probe of the IPv4 and IPv6 stacks and the first socket. Under
// emulation the first listen takes 12–20 ms (a later one under 0.5 ms),
// on the way to `ggcore ready` after every check has passed; warmed while
// the keys load, it is off that path. The socket is closed before bind
// (ListenConfig.Control refuses it), so no port is ever held early and
// the "check everything before binding" rule stands.
func warmListen() {
	lc := net.ListenConfig{Control: func(string, string, syscall.RawConn) error { return errWarmUpOnly }}
	if ln, err := lc.Listen(context.Background(), "tcp", ":0"); err == nil {
		ln.Close() // not reached: Control refuses every socket
	}
}
