package iotbroker

import "github.com/ggcore/ggcore/internal/mochiext"

// Shutting down without hanging: mochi's Server.Close can wait forever
// (a double read lock on its clients, connections that never sent
// CONNECT, clients that stopped reading). Broker.Close first has the
// listener end every connection itself (mochiext.TLSListener.Shutdown,
// which explains the hangs), then calls mochi's Close, which finds only
// connections that are ending.

// closeGrace is how long Close lets the clients' DISCONNECT packets be
// written before it closes every connection.
const closeGrace = mochiext.ShutdownGrace

// listenerID is the ID of the broker's only mochi listener.
const listenerID = "mqtts"
