#!/usr/bin/env bash
# make run: provisions a demo fleet (a core, two devices, one subscription
# sensor -> display) into BUILD/demo once, with the core's keys in an
# emulated TPM (swtpm, state in BUILD/swtpm), starts ggcore on 127.0.0.1,
# and prints the mosquitto lines that work against it. Ctrl-C stops the
# core and the TPM. GGCORE_DEMO_KEYS=file keeps the core's keys in files.
set -euo pipefail
build=${1:-build}
bin="$build/bin"
demo="$build/demo"
port=${GGCORE_DEMO_PORT:-8883}
keys=${GGCORE_DEMO_KEYS:-tpm2}

# The emulated TPM: its state (the SRK the key files are wrapped under)
# lives in $build/swtpm and outlives the demo, like a real TPM's NVRAM.
tpmdir=$(mkdir -p "$build/swtpm" && cd "$build/swtpm" && pwd)
swtpm_pid=
start_swtpm() {
  rm -f "$tpmdir/tpm.sock" "$tpmdir/tpm.sock.ctrl"
  swtpm socket --tpm2 --tpmstate dir="$tpmdir" \
    --server type=unixio,path="$tpmdir/tpm.sock" --ctrl type=unixio,path="$tpmdir/tpm.sock.ctrl" \
    --flags not-need-init,startup-clear --log file="$tpmdir/swtpm.log",level=1 &
  swtpm_pid=$!
  trap 'kill $swtpm_pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do [ -S "$tpmdir/tpm.sock" ] && return; sleep 0.05; done
  echo "demo: swtpm did not start; see $tpmdir/swtpm.log" >&2
  exit 1
}

if [ ! -f "$demo/config.json" ]; then
  echo "== provisioning a demo fleet into $demo (core keys: $keys)" >&2
  store=()
  if [ "$keys" = tpm2 ]; then
    start_swtpm
    store=(--key-store tpm2 --tpm-device "unix://$tpmdir/tpm.sock")
  fi
  "$bin/ggprov" init --dir "$demo" --core demo-core --device sensor --device display \
    --mqtt-port "$port" --bind 127.0.0.1 "${store[@]}"
  "$bin/ggprov" subscription add --dir "$demo" --source sensor --subject 'sensors/sensor/#' --target display
elif grep -q '"device": "unix://' "$demo/config.json"; then
  start_swtpm
fi

demo=$(cd "$demo" && pwd)
# The demo's MQTT server certificate lives 7 days, as v1's did; renew it
# when it has less than a day left.
if ! openssl x509 -checkend 86400 -noout -in "$demo/write/dcm/mqtt-server.cert.pem" >/dev/null; then
  echo "== renewing the demo's MQTT server certificate" >&2
  "$bin/ggprov" server-cert --dir "$demo"
fi
port=$(sed -n 's/.*"ggMqttPort": *\([0-9]*\).*/\1/p' "$demo/config.json" | head -n1)
tls=(--cafile "$demo/certs/group-ca.pem" -h 127.0.0.1 -p "$port" -V mqttv311)
cat <<TXT

== ggcore demo: core "demo-core", devices "sensor" and "display"
   subscription: sensor -> display on sensors/sensor/#   (group: $demo/write/deployment/group/group.json)

In another terminal, receive as "display":
  mosquitto_sub ${tls[*]} --cert $demo/devices/display.cert.pem --key $demo/devices/display.key.pem -i display -t 'sensors/#' -v

and publish as "sensor":
  mosquitto_pub ${tls[*]} --cert $demo/devices/sensor.cert.pem --key $demo/devices/sensor.key.pem -i sensor -t sensors/sensor/temperature -m 21.5

The table routes nothing back: "display" publishing on sensors/sensor/x reaches nobody.
Edit the group's Subscriptions and send SIGHUP (kill -HUP <pid>) to reload it. Ctrl-C stops the core.
The core's keys: $(grep -q '"device": "unix://' "$demo/config.json" && echo "in the emulated TPM (swtpm, $tpmdir)" || echo "in files under $demo/certs")

TXT
if [ -z "$swtpm_pid" ]; then
  exec "$bin/ggcore" --config "$demo/config.json"
fi
# ggcore runs as a child so that the TPM stops after it.
"$bin/ggcore" --config "$demo/config.json" &
core_pid=$!
trap 'kill -TERM $core_pid 2>/dev/null || true' INT TERM
status=0
wait $core_pid || status=$?
# A signal interrupts the first wait; wait again for ggcore's exit status.
if kill -0 $core_pid 2>/dev/null; then wait $core_pid || status=$?; fi
kill $swtpm_pid 2>/dev/null || true
exit $status
