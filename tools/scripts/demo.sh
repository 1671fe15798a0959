#!/usr/bin/env bash
# make run: provisions a demo fleet (a core, two devices, one subscription
# sensor -> display) into BUILD/demo once, starts ggcore on 127.0.0.1, and
# prints the mosquitto lines that work against it. Ctrl-C stops the core.
set -euo pipefail
build=${1:-build}
bin="$build/bin"
demo="$build/demo"
port=${GGCORE_DEMO_PORT:-8883}

if [ ! -f "$demo/config.json" ]; then
  echo "== provisioning a demo fleet into $demo" >&2
  "$bin/ggprov" init --dir "$demo" --core demo-core --device sensor --device display \
    --mqtt-port "$port" --bind 127.0.0.1
  "$bin/ggprov" subscription add --dir "$demo" --source sensor --subject 'sensors/sensor/#' --target display
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

TXT
exec "$bin/ggcore" --config "$demo/config.json"
