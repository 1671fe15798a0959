// Package sdkjs proves that an unmodified AWS IoT Device SDK for
// JavaScript v2 (npm aws-iot-device-sdk-v2, pinned in package-lock.json)
// discovers its Greengrass core through ggcloud: TestDiscoveryClient
// registers a core, two devices and a group with a group CA in a fresh
// ggcloud data directory, builds and starts the ggcloud command on
// 127.0.0.1 (`ggcloud serve`, mutual TLS), and runs
// discover.js, which calls the SDK's greengrass.DiscoveryClient.discover
// with a device certificate and prints what the SDK parsed: the group,
// the core's thing ARN, its host and port, and the group CA.
//
// Run it with
//
//	go test ./tests/sdkjs -count=1 -v
//
// It needs node and npm: it runs `npm ci --ignore-scripts` here when
// node_modules is missing or older than package-lock.json (about 60
// packages, 56 MB, from the npm registry; aws-crt ships prebuilt native
// addons, so nothing is compiled and no other host is contacted). Without
// node or npm it skips, except under CI=true, where it fails.
//
// How the SDK is pointed at ggcloud, with no change to the SDK or to
// /etc/hosts:
//
//   - Host: DiscoveryClient's gg_server_name parameter (the fifth
//     constructor argument) replaces greengrass-ats.iot.<region>.amazonaws.com.
//     discover.js passes 127.0.0.1: the SDK connects there, sends it as
//     SNI and checks it against the server certificate, which carries
//     the IP address 127.0.0.1.
//   - Port: the SDK has no port parameter. It connects to 443 with the
//     ALPN protocol x-amzn-http-ca when its TLS stack has ALPN (s2n, on
//     Linux, always does) and to 8443 otherwise; `node discover.js
//     --alpn` tells which, and the test listens on 127.0.0.1 at that
//     port. ggcloud serves x-amzn-http-ca as HTTP/1.1 (tools/ggcloud/alpn.go),
//     and the test checks that it negotiates it. Listening on 443 needs root, CAP_NET_BIND_SERVICE or
//     net.ipv4.ip_unprivileged_port_start <= 443; without it the test
//     skips (fails under CI=true). If the port is taken the test fails.
//   - Trust: the device's TLS context is made with
//     TlsContextOptions.create_client_with_mtls_from_path (its certificate
//     and key) and override_default_trust_store_from_path (the CA that
//     issued ggcloud's server certificate), as the SDK's discovery sample
//     does with Amazon's root CA.
package sdkjs
