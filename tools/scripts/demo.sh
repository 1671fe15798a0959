#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup runs from a trap
# make run in host mode (GGCORE_DEMO_MODE=host): provisions a demo fleet
# (a core, two devices; subscriptions sensor -> display and sensor ->
# cloud on sensors/sensor/#, cloud -> display on commands/display/#) into
# BUILD/demo once, with the core's keys in an emulated TPM (swtpm, state
# in BUILD/demo-tpm); starts that TPM, the control plane (ggcloud on
# 127.0.0.1:8443, its MQTT broker standing in for AWS IoT Core on
# 127.0.0.1:8884, data in BUILD/ggcloud) and ggcore on 127.0.0.1:8883;
# registers the fleet in ggcloud, so that ggcore's device certificate
# manager gets the MQTT server certificate from it and the core connects
# upstream to ggcloud's broker; registers the cloud-side application
# demo-cloud-app; and prints the mosquitto and curl lines that work
# against them. Ctrl-C stops ggcore, then ggcloud, then swtpm.
#   GGCORE_DEMO_PORT        the MQTT port (default 8883)
#   GGCORE_DEMO_CLOUD_PORT  ggcloud's port (default 8443)
#   GGCORE_DEMO_IOT_PORT    ggcloud's MQTT broker's port (default 8884)
#   GGCORE_DEMO_KEYS=file   keeps the core's keys in files (when provisioning)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools/scripts/ggcloud-demo.sh
. "$here/ggcloud-demo.sh"
demo_init "${1:-build}"

core_pid=
cleanup() {
  # Stop everything even when the terminal is gone (writes fail then).
  set +e
  trap '' INT TERM HUP
  demo_stop "$core_pid" ggcore
  demo_stop "$cloud_pid" ggcloud
  demo_stop "$swtpm_pid" swtpm
}
trap cleanup EXIT
trap 'exit 0' INT TERM HUP

demo_port_free "$port" "the demo's MQTT port" GGCORE_DEMO_PORT
demo_port_free "$cport" "ggcloud, the demo's control plane" GGCORE_DEMO_CLOUD_PORT
demo_port_free "$iport" "ggcloud's MQTT broker, the core's upstream" GGCORE_DEMO_IOT_PORT
demo_bundle "$port"
[ -z "$tpm_sock" ] || demo_start_swtpm "$tpm_sock"
demo_start_ggcloud
demo_register 127.0.0.1
demo_print host

"$bin/ggcore" --config "$demo/config.json" &
core_pid=$!
echo "== ggcore started (pid $core_pid; kill -HUP $core_pid re-reads $demo/write/deployment/group/group.json)" >&2
status=0
wait -n -p finished "$core_pid" "$cloud_pid" || status=$?
if [ "${finished:-}" = "$cloud_pid" ]; then
  cloud_pid=
  echo "demo: ggcloud stopped unexpectedly (status $status); its log: $cloud_log" >&2
  exit 1
fi
core_pid=
echo "demo: ggcore exited (status $status)" >&2
exit "$status"
