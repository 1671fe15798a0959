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
//
// They run in parallel on a loaded CI machine, so they follow two rules.
// Every wait polls for its condition up to testtool.Timeout; nothing sleeps
// for a fixed time to let something happen. And every MQTT connection of a
// test has a client ID of its own, which here means a device of its own
// (ggcore admits a device only under its thing name): a client ID that
// connects again takes over its previous session, and the broker's
// teardown of the old session can race with the new one's setup, so only
// the tests about resuming a session reconnect under one client ID.
package e2e
