#!/usr/bin/env node
// discover.js asks a Greengrass discovery endpoint (here ggcloud) which
// cores a thing may connect to, with the AWS IoT Device SDK for
// JavaScript v2's greengrass.DiscoveryClient, and prints what the SDK
// parsed as one line of JSON on stdout. go test ./tests/sdkjs runs it.
//
//   node discover.js --server-name 127.0.0.1 --cert device.pem.crt \
//     --key device.pem.key --ca root.pem --thing sensor [--region us-east-1]
//   node discover.js --alpn
//
// Every flag may also be given as an environment variable: --server-name
// as GG_SERVER_NAME, --cert as GG_CERT, and so on.
//
// --server-name is the DiscoveryClient's gg_server_name: the host it
// connects to, sends as SNI and verifies the server certificate against.
// The SDK chooses the port itself: 443 with the ALPN protocol
// x-amzn-http-ca where the TLS stack has ALPN (s2n on Linux always does),
// 8443 otherwise. --alpn prints {"alpn": true|false} so that the caller
// knows which port to listen on.
//
// Success: {"groups":[{"id","cores":[{"thingArn","connectivity":[{"id",
// "host","port","metadata"}]}],"caCount","firstCA"}]} and exit 0.
// Failure: {"error","responseCode"} on stdout, the error on stderr, exit 1.
'use strict';

const { greengrass, io } = require('aws-iot-device-sdk-v2');

function options(argv) {
  const opts = {};
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--alpn') {
      opts.alpn = true;
      continue;
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unexpected argument ${JSON.stringify(a)}`);
    if (m[2] !== undefined) {
      opts[m[1]] = m[2];
    } else {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      opts[m[1]] = argv[++i];
    }
  }
  const env = (flag) => process.env['GG_' + flag.toUpperCase().replace(/-/g, '_')];
  for (const flag of ['server-name', 'cert', 'key', 'ca', 'thing', 'region', 'timeout-ms']) {
    if (opts[flag] === undefined && env(flag) !== undefined) opts[flag] = env(flag);
  }
  return opts;
}

function summary(resp) {
  return {
    groups: resp.gg_groups.map((g) => ({
      id: g.gg_group_id,
      cores: g.cores.map((c) => ({
        thingArn: c.thing_arn,
        connectivity: c.connectivity.map((e) => ({
          id: e.id, host: e.host_address, port: e.port, metadata: e.metadata,
        })),
      })),
      caCount: (g.certificate_authorities || []).length,
      firstCA: (g.certificate_authorities || [])[0] || null,
    })),
  };
}

async function main() {
  const opts = options(process.argv);
  if (opts.alpn) {
    process.stdout.write(JSON.stringify({ alpn: io.is_alpn_available() }) + '\n');
    return;
  }
  for (const flag of ['server-name', 'cert', 'key', 'ca', 'thing']) {
    if (!opts[flag]) throw new Error(`--${flag} is required`);
  }
  if (process.env.GG_CRT_LOG) io.enable_logging(io.LogLevel[process.env.GG_CRT_LOG]);

  const bootstrap = new io.ClientBootstrap();
  const socket = new io.SocketOptions(io.SocketType.STREAM, io.SocketDomain.IPV4, 5000);
  const tlsOpts = io.TlsContextOptions.create_client_with_mtls_from_path(opts.cert, opts.key);
  tlsOpts.override_default_trust_store_from_path(undefined, opts.ca);
  const tls = new io.ClientTlsContext(tlsOpts);
  const client = new greengrass.DiscoveryClient(bootstrap, socket, tls,
    opts.region || 'us-east-1', opts['server-name']);

  const timeoutMs = Number(opts['timeout-ms'] || 20000);
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`discover: no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const resp = await Promise.race([client.discover(opts.thing), timeout]);
    process.stdout.write(JSON.stringify(summary(resp)) + '\n');
  } finally {
    clearTimeout(timer);
  }
}

main().then(
  // The SDK's connection manager keeps the event loop alive: exit.
  () => process.exit(0),
  (err) => {
    const code = err && err.response_code;
    const msg = err && err.message ? err.message : String(err);
    process.stdout.write(JSON.stringify({ error: msg, responseCode: code === undefined ? null : code }) + '\n');
    process.stderr.write(`discover: ${msg}${code === undefined ? '' : ` (HTTP ${code})`}\n`);
    process.exit(1);
  },
);
