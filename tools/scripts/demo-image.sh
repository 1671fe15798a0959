#!/usr/bin/env bash
# make run: provisions a demo fleet (core demo-core, devices sensor and
# display, subscription sensor -> display) into BUILD/demo with the core's
# keys in a fresh emulated TPM (swtpm, state in BUILD/demo-tpm), builds the
# data disk, boots the tpm image (BUILD/images) in QEMU with that TPM, and
# prints the mosquitto lines a device uses from the host. Ctrl-C stops
# QEMU and swtpm. GGCORE_DEMO_MODE=host runs the core on the host instead.
set -euo pipefail
build=${1:-build}
bin="$build/bin"
demo="$build/demo"
port=${GGCORE_DEMO_PORT:-8883}
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$build/demo-tpm"
tpm=$(cd "$build/demo-tpm" && pwd)

# A swtpm on a socket for ggprov (QEMU gets its own on the same state).
with_tpm() {
  rm -f "$tpm/prov.sock" "$tpm/prov.sock.ctrl"
  swtpm socket --tpm2 --tpmstate dir="$tpm" --server type=unixio,path="$tpm/prov.sock" \
    --ctrl type=unixio,path="$tpm/prov.sock.ctrl" --flags not-need-init,startup-clear &
  local pid=$!
  for _ in $(seq 100); do [ -S "$tpm/prov.sock" ] && break; sleep 0.05; done
  "$@" || { kill $pid; return 1; }
  kill $pid
  wait $pid 2>/dev/null || true
}

if [ ! -f "$demo/config.json" ]; then
  echo "== provisioning a demo fleet into $demo (core keys in the emulated TPM, $tpm)" >&2
  rm -rf "$tpm"/* "$demo"
  with_tpm "$bin/ggprov" init --dir "$demo" --core demo-core --device sensor --device display \
    --mqtt-port 8883 --bind 0.0.0.0 --key-store tpm2 --tpm-device "unix://$tpm/prov.sock"
  "$bin/ggprov" subscription add --dir "$demo" --source sensor --subject 'sensors/sensor/#' --target display
fi
demo=$(cd "$demo" && pwd)
if ! openssl x509 -checkend 86400 -noout -in "$demo/write/dcm/mqtt-server.cert.pem" >/dev/null; then
  echo "== renewing the demo's MQTT server certificate" >&2
  with_tpm "$bin/ggprov" server-cert --dir "$demo"
fi
echo "== building the data disk" >&2
"$here/initramfs/disk.sh" "$demo" "$build/demo-disk.img"

tls=(--cafile "$demo/certs/group-ca.pem" -h 127.0.0.1 -p "$port" -V mqttv311)
cat <<TXT

== ggcore image in QEMU: core "demo-core" with its keys in the emulated TPM; devices "sensor" and "display"
   subscription: sensor -> display on sensors/sensor/#
   the guest's MQTT port 8883 is forwarded to 127.0.0.1:$port

Once the console below says "ggcore ready", in another terminal, receive as "display":
  mosquitto_sub ${tls[*]} --cert $demo/devices/display.cert.pem --key $demo/devices/display.key.pem -i display -t 'sensors/#' -v

and publish as "sensor":
  mosquitto_pub ${tls[*]} --cert $demo/devices/sensor.cert.pem --key $demo/devices/sensor.key.pem -i sensor -t sensors/sensor/temperature -m 21.5

Ctrl-C stops QEMU and the TPM.

TXT
exec "$here/initramfs/qemu.sh" amd64 "$build/images/ggcore-tpm-amd64.cpio.xz" "$build/images/vmlinuz-amd64" \
  "$build/demo-disk.img" "$port" "$tpm"
