package main

import (
	"slices"
	"strings"
	"testing"
)

func TestMosquittoConf(t *testing.T) {
	p := mosquittoParams{Port: 18883, CAFile: "/b/certs/root.ca.pem", CertFile: "/b/write/dcm/mqtt-server.cert.pem",
		KeyFile: "/b/write/dcm/mqtt-server.key.pem", LogFile: "/w/mosquitto.log", MaxConnections: -1}
	lines := strings.Split(mosquittoConf(p), "\n")
	// What makes the baseline comparable to ggcore: loopback only, mutual
	// TLS against the same CA and server certificate, identity from the
	// certificate, nothing dropped, nothing written to disk.
	for _, want := range []string{
		"listener 18883 127.0.0.1",
		"cafile /b/certs/root.ca.pem",
		"certfile /b/write/dcm/mqtt-server.cert.pem",
		"keyfile /b/write/dcm/mqtt-server.key.pem",
		"require_certificate true",
		"use_identity_as_username true",
		"allow_anonymous false",
		"tls_version tlsv1.2",
		"persistence false",
		"log_dest file /w/mosquitto.log",
		"max_queued_messages 10000000",
		"set_tcp_nodelay true",
		"max_connections -1",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("mosquitto.conf lacks line %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	if slices.Contains(lines, "user root") {
		t.Error("mosquitto.conf switches user to root although RunAsRoot is false")
	}
	p.RunAsRoot = true
	if !strings.Contains(mosquittoConf(p), "\nuser root\n") {
		t.Error("mosquitto.conf run as root lacks \"user root\" (mosquitto would switch to an unprivileged user and not read the bundle)")
	}
}
