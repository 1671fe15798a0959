// Package e2e holds ggcore's host-mode end-to-end tests: they build the
// real ggprov and ggcore binaries, provision a fleet with ggprov, run the
// core, and drive it with real MQTT clients (paho.golang for MQTT 5,
// mosquitto_pub/mosquitto_sub for MQTT 3.1.1) and openssl s_client.
//
// Run them with
//
//	go test ./tests/e2e -count=1 -v
//
// Tests that need mosquitto-clients or openssl skip when the tool is
// missing, except under CI=true, where they fail instead.
package e2e
