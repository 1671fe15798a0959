# shellcheck shell=bash
# ggcloud-demo.sh: the part of `make run` both modes share; sourced by
# demo.sh (host mode) and demo-image.sh (image mode), not run by itself.
#
# One demo fleet serves both modes:
#   BUILD/demo        the ggprov bundle: config.json, CAs, the core's
#                     certificates and TPM-wrapped keys, the devices' keys,
#                     the group (write/deployment/group/group.json), and
#                     ggcloud's server certificate (ggcloud/)
#   BUILD/demo-tpm    the emulated TPM's state (the SRK the core's key files
#                     are wrapped under); it belongs with BUILD/demo
#   BUILD/ggcloud     the control plane's data (ggcloud.db, admin.sock) and
#                     its log, ggcloud.log; ggcloud also runs the MQTT
#                     broker standing in for AWS IoT Core, the core's upstream
# The core's MQTT server certificate comes from ggcloud through ggcore's
# device certificate manager (state in BUILD/demo/write/dcm in host mode,
# on the guest's data disk in image mode).
#
# demo_init BUILD sets: build bin demo cloud_data port cport iport keys.

demo_die() {
  echo "demo: $*" >&2
  exit 1
}

demo_init() {
  mkdir -p "$1"
  build=$(cd "$1" && pwd)
  bin="$build/bin"
  demo="$build/demo"
  cloud_data="$build/ggcloud"
  port=${GGCORE_DEMO_PORT:-8883}
  cport=${GGCORE_DEMO_CLOUD_PORT:-8443}
  iport=${GGCORE_DEMO_IOT_PORT:-8884}
  keys=${GGCORE_DEMO_KEYS:-tpm}
  swtpm_pid='' cloud_pid=''
  local p
  for p in GGCORE_DEMO_PORT:$port GGCORE_DEMO_CLOUD_PORT:$cport GGCORE_DEMO_IOT_PORT:$iport; do
    case ${p#*:} in
      '' | *[!0-9]*) demo_die "${p%%:*}=${p#*:}: want a TCP port number" ;;
    esac
    if [ "${p#*:}" -lt 1 ] || [ "${p#*:}" -gt 65535 ]; then demo_die "${p%%:*}=${p#*:}: want a TCP port number (1-65535)"; fi
  done
  if [ "$port" = "$cport" ] || [ "$port" = "$iport" ] || [ "$cport" = "$iport" ]; then
    demo_die "GGCORE_DEMO_PORT ($port), GGCORE_DEMO_CLOUD_PORT ($cport) and GGCORE_DEMO_IOT_PORT ($iport) must differ"
  fi
  case $keys in
    tpm | file) ;;
    tpm2) keys=tpm ;; # the old spelling
    *) demo_die "GGCORE_DEMO_KEYS=$keys: want tpm (default) or file" ;;
  esac
  local b
  for b in ggcore ggprov ggcloud; do
    [ -x "$bin/$b" ] || demo_die "$bin/$b is missing: run make build (make run does it)"
  done
  for b in openssl swtpm; do
    command -v "$b" >/dev/null 2>&1 || demo_die "$b is missing: apt-get install $b"
  done
}

# demo_port_free PORT WHAT VAR: stops the demo when something already
# listens on 127.0.0.1:PORT, saying which variable moves it.
demo_port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    demo_die "127.0.0.1:$1 ($2) is already in use: by another \`make run\` still running, or another program (ss -ltnp 'sport = :$1' shows which). Stop it, or choose another port: $3=$(($1 < 55536 ? $1 + 10000 : $1 - 10000)) make run"
  fi
}

# demo_alive PID: the process runs (a zombie does not count).
demo_alive() {
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s:0:1}" != Z ]
}

# demo_stop PID NAME: SIGTERM, up to 15 s to exit, then SIGKILL; reaps it.
demo_stop() {
  local pid=$1 name=$2
  [ -n "$pid" ] || return 0
  if demo_alive "$pid"; then
    echo "== stopping $name (pid $pid)" >&2
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
      demo_alive "$pid" || break
      sleep 0.1
    done
    if demo_alive "$pid"; then
      echo "demo: $name did not stop within 15 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

# demo_tpm_socket: the swtpm socket the bundle's config.json names
# (ggcore.tpm.device unix://PATH); empty when the core's keys are files
# (ggprov init then leaves the default device, /dev/tpmrm0, unused).
demo_tpm_socket() {
  local dev
  dev=$("$bin/ggprov" config get --dir "$demo" ggcore.tpm.device) || demo_die "cannot read $demo/config.json"
  case $dev in
    unix://*) echo "${dev#unix://}" ;;
  esac
}

# demo_start_swtpm SOCKET: an emulated TPM on SOCKET with its state in the
# socket's directory, in its own session so that Ctrl-C reaches it only
# through the demo, after ggcore has stopped. Sets swtpm_pid.
demo_start_swtpm() {
  local sock=$1 dir
  dir=$(dirname "$sock")
  mkdir -p "$dir"
  rm -f "$sock" "$sock.ctrl"
  setsid swtpm socket --tpm2 --tpmstate dir="$dir" \
    --server type=unixio,path="$sock" --ctrl type=unixio,path="$sock.ctrl" \
    --flags not-need-init,startup-clear --log file="$dir/swtpm.log",level=1 </dev/null &
  swtpm_pid=$!
  for _ in $(seq 100); do
    [ -S "$sock" ] && return 0
    demo_alive "$swtpm_pid" || break
    sleep 0.05
  done
  tail -n 5 "$dir/swtpm.log" >&2 2>/dev/null || true
  demo_die "swtpm did not start on $sock (is another demo using $dir? its log: $dir/swtpm.log)"
}

# demo_bundle MQTTPORT: provisions the demo fleet into BUILD/demo when
# there is none (or its TPM state is gone), and moves an older one to the
# device certificate manager. Each run sets what the mode needs:
# ggMqttPort (MQTTPORT), localMqttBind 127.0.0.1 (the image's disk
# rewrites it to 0.0.0.0) and ggcore.connectivity 127.0.0.1:PORT (where
# host-side devices reach the core, so discovery tells them that). Sets
# tpm_sock and tpmdir (empty with file keys).
demo_bundle() {
  local mqtt_port=$1 reason=
  tpm_sock='' tpmdir=''
  if [ ! -f "$demo/config.json" ]; then
    reason="none yet"
  else
    tpm_sock=$(demo_tpm_socket)
    if [ -n "$tpm_sock" ] && [ ! -f "$(dirname "$tpm_sock")/tpm2-00.permall" ]; then
      reason="the TPM state its keys need, $(dirname "$tpm_sock"), is gone"
    fi
  fi
  if [ -n "$reason" ]; then
    echo "== provisioning a demo fleet into $demo ($reason; core keys: $keys)" >&2
    [ ! -e "$cloud_data" ] || echo "== ggcloud's data $cloud_data belongs to the fleet provisioned before: removing it" >&2
    rm -rf "$demo" "$cloud_data"
    tpm_sock=
    if [ "$keys" = tpm ]; then
      tpm_sock="$build/demo-tpm/tpm.sock"
      rm -rf "$build/demo-tpm"
      demo_start_swtpm "$tpm_sock"
    fi
    local store=() ok=0
    [ -z "$tpm_sock" ] || store=(--key-store tpm --tpm-device "unix://$tpm_sock")
    "$bin/ggprov" init --dir "$demo" --core demo-core --device sensor --device display \
      --mqtt-port "$mqtt_port" --bind 127.0.0.1 "${store[@]}" && ok=1
    demo_stop "$swtpm_pid" "the provisioning's swtpm"
    swtpm_pid=
    [ "$ok" = 1 ] || demo_die "ggprov init failed; nothing is running"
    "$bin/ggprov" subscription add --dir "$demo" --source sensor --subject 'sensors/sensor/#' --target display >/dev/null
  elif [ -n "${GGCORE_DEMO_KEYS:-}" ] && [ "$keys" = "$([ -n "$tpm_sock" ] && echo file || echo tpm)" ]; then
    echo "demo: GGCORE_DEMO_KEYS=$keys applies when the fleet is provisioned; $demo keeps its keys where they are (rm -rf $demo to provision afresh)" >&2
  fi
  [ -z "$tpm_sock" ] || tpmdir=$(dirname "$tpm_sock")
  # The cloud routes (added to fleets made before the cloud bridge too):
  # sensor -> cloud, and cloud -> display.
  local group="$demo/write/deployment/group/group.json"
  "$bin/ggprov" subscription add --dir "$demo" --if-missing --source sensor --subject 'sensors/sensor/#' --target cloud >/dev/null ||
    demo_die "cannot add the sensor -> cloud subscription to $group"
  "$bin/ggprov" subscription add --dir "$demo" --if-missing --source cloud --subject 'commands/display/#' --target display >/dev/null ||
    demo_die "cannot add the cloud -> display subscription to $group"

  local server_key
  server_key=$("$bin/ggprov" config get --dir "$demo" crypto.principals.MQTTServerCertificate) ||
    demo_die "cannot read $demo/config.json"
  if [ -n "$server_key" ]; then
    [ -n "$reason" ] || echo "== moving $demo to ggcore's device certificate manager: crypto.principals.MQTTServerCertificate removed, so ggcore makes its MQTT server key and gets the certificate from ggcloud" >&2
    "$bin/ggprov" config unset --dir "$demo" crypto.principals.MQTTServerCertificate >/dev/null ||
      demo_die "cannot edit $demo/config.json"
    rm -f "$demo/write/dcm/mqtt-server.cert.pem" "$demo/write/dcm/mqtt-server.key.pem"
  fi
  "$bin/ggprov" config set --dir "$demo" coreThing.ggMqttPort "$mqtt_port" ggcore.localMqttBind 127.0.0.1 \
    ggcore.connectivity "127.0.0.1:$port" >/dev/null || demo_die "cannot edit $demo/config.json"
}

# demo_start_ggcloud: issues ggcloud's server certificate from the
# bundle's root CA (names 127.0.0.1, localhost and 10.0.2.2, the host as
# QEMU's guest sees it) unless a valid one is there, and starts ggcloud on
# 127.0.0.1:CPORT in its own session. Sets cloud_pid and cloud_log.
demo_start_ggcloud() {
  local cert="$demo/ggcloud/server.cert.pem" key="$demo/ggcloud/server.key.pem"
  if [ -f "$cert" ] && ! { openssl x509 -checkend 86400 -noout -in "$cert" >/dev/null &&
    openssl x509 -noout -in "$cert" -checkip 10.0.2.2 | grep -q 'does match' &&
    openssl x509 -noout -in "$cert" -checkip 127.0.0.1 | grep -q 'does match'; }; then
    echo "== ggcloud's server certificate expires within a day or lacks 127.0.0.1 or 10.0.2.2; issuing a new one" >&2
    rm -f "$cert" "$key"
  fi
  if [ ! -f "$cert" ] || [ ! -f "$key" ]; then
    rm -f "$cert" "$key"
    "$bin/ggprov" ggcloud-cert --dir "$demo" --host 127.0.0.1 --host localhost --host 10.0.2.2 >&2
  fi
  # ggcloud's data belongs to one fleet: another fleet's group, things and
  # certificates would clash with this one's.
  local gid
  gid=$("$bin/ggprov" config get --dir "$demo" group.GroupId)
  if [ -e "$cloud_data" ] && [ "$(cat "$cloud_data/demo-group" 2>/dev/null)" != "$gid" ]; then
    echo "== $cloud_data is not this fleet's (group $gid); ggcloud starts afresh" >&2
    rm -rf "$cloud_data"
  fi
  mkdir -p "$cloud_data"
  chmod 700 "$cloud_data"
  cloud_log="$cloud_data/ggcloud.log"
  setsid "$bin/ggcloud" --data "$cloud_data" serve --listen "127.0.0.1:$cport" --mqtt-listen "127.0.0.1:$iport" \
    --cert "$cert" --key "$key" </dev/null >"$cloud_log" 2>&1 &
  cloud_pid=$!
  for _ in $(seq 300); do
    grep -q 'ggcloud ready' "$cloud_log" && {
      echo "== ggcloud ready on 127.0.0.1:$cport, its MQTT broker on 127.0.0.1:$iport (pid $cloud_pid, log $cloud_log)" >&2
      return 0
    }
    demo_alive "$cloud_pid" || break
    sleep 0.05
  done
  tail -n 5 "$cloud_log" >&2
  if grep -q "127.0.0.1:$iport.*address already in use" "$cloud_log"; then
    demo_die "ggcloud cannot run its MQTT broker on 127.0.0.1:$iport: it is in use; choose another port: GGCORE_DEMO_IOT_PORT=$((iport < 55536 ? iport + 10000 : iport - 10000)) make run"
  fi
  if grep -q 'address already in use' "$cloud_log"; then
    demo_die "ggcloud cannot listen on 127.0.0.1:$cport: it is in use; choose another port: GGCORE_DEMO_CLOUD_PORT=$((cport < 55536 ? cport + 10000 : cport - 10000)) make run"
  fi
  demo_die "ggcloud did not start (log above, in $cloud_log)"
}

# demo_register HOST: registers the fleet in the running ggcloud (core,
# devices, policies, group; harmless when done already), points
# config.json's ggHost/ggHttpPort at HOST:CPORT and iotHost/iotMqttPort at
# HOST:IPORT (ggcloud's broker), lets the core use the fleet's cloud
# topics there, and makes the cloud-side application demo-cloud-app.
demo_register() {
  "$bin/ggprov" register --dir "$demo" --ggcloud-data "$cloud_data" --ggcloud "$1:$cport" --iot "$1:$iport" >&2 ||
    demo_die "ggprov register failed (ggcloud's log: $cloud_log)"
  "$bin/ggprov" config get --dir "$demo" group.GroupId >"$cloud_data/demo-group"
  local arn prefix gg=("$bin/ggcloud" --data "$cloud_data")
  arn=$("$bin/ggprov" config get --dir "$demo" coreThing.thingArn)
  prefix=${arn%thing/*}
  # v1's minimal core policy allows only $aws/things/demo-core-* topics.
  cat >"$cloud_data/demo-core-bridge.json" <<JSON
{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Publish","Resource":"${prefix}topic/sensors/sensor/*"},
 {"Effect":"Allow","Action":"iot:Subscribe","Resource":"${prefix}topicfilter/commands/display/*"},
 {"Effect":"Allow","Action":"iot:Receive","Resource":"${prefix}topic/commands/display/*"}]}
JSON
  cat >"$cloud_data/demo-cloud-app.json" <<JSON
{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":["${prefix}client/demo-cloud-app","${prefix}client/demo-cloud-app-*"]},
 {"Effect":"Allow","Action":"iot:Subscribe","Resource":"${prefix}topicfilter/sensors/*"},
 {"Effect":"Allow","Action":"iot:Receive","Resource":"${prefix}topic/sensors/*"},
 {"Effect":"Allow","Action":"iot:Publish","Resource":"${prefix}topic/commands/*"}]}
JSON
  local app_cert="$demo/cloud-app.cert.pem" app_key="$demo/cloud-app.key.pem"
  if [ -f "$app_cert" ] && ! { openssl x509 -checkend 86400 -noout -in "$app_cert" >/dev/null &&
    openssl verify -CAfile "$demo/certs/root.ca.pem" "$app_cert" >/dev/null 2>&1; }; then
    echo "== the cloud application's certificate expires within a day or is not the fleet root CA's; issuing a new one" >&2
    rm -f "$app_cert" "$app_key"
  fi
  if [ ! -f "$app_cert" ] || [ ! -f "$app_key" ]; then
    echo "== issuing the cloud application's certificate (demo-cloud-app) from the fleet's root CA" >&2
    rm -f "$app_cert" "$app_key"
    local out ok=0
    # openssl's own output only when it fails.
    out=$({ (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$app_key") &&
      openssl req -new -key "$app_key" -subj /CN=demo-cloud-app -out "$demo/cloud-app.csr" &&
      openssl x509 -req -in "$demo/cloud-app.csr" -CA "$demo/certs/root.ca.pem" -CAkey "$demo/certs/root.ca.key" \
        -CAcreateserial -CAserial "$demo/cloud-app.srl" -days 365 -sha256 \
        -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n') \
        -out "$app_cert"; } 2>&1) && ok=1
    if [ "$ok" != 1 ]; then
      echo "$out" >&2
      rm -f "$app_key" "$app_cert" "$demo/cloud-app.csr" "$demo/cloud-app.srl"
      demo_die "cannot issue the cloud application's certificate with openssl"
    fi
    rm -f "$demo/cloud-app.csr" "$demo/cloud-app.srl"
  fi
  local core_id app_id
  core_id=$(openssl x509 -in "$demo/certs/core.cert.pem" -outform DER | sha256sum | cut -d' ' -f1)
  {
    "${gg[@]}" policy create demo-core-bridge --document "$cloud_data/demo-core-bridge.json" &&
      "${gg[@]}" policy attach demo-core-bridge --cert "$core_id" &&
      "${gg[@]}" thing create demo-cloud-app &&
      app_id=$("${gg[@]}" cert register --thing demo-cloud-app --pem "$app_cert") &&
      "${gg[@]}" policy create demo-cloud-app --document "$cloud_data/demo-cloud-app.json" &&
      "${gg[@]}" policy attach demo-cloud-app --cert "$app_id"
  } >/dev/null || demo_die "cannot register the cloud bridge's policies and the cloud application in ggcloud (its log: $cloud_log)"
}

# demo_print MODE: what to do with the running demo.
demo_print() {
  local tls=(--cafile "$demo/certs/group-ca.pem" -h 127.0.0.1 -p "$port" -V mqttv311)
  local cloud=(--cafile "$demo/certs/root.ca.pem" -h 127.0.0.1 -p "$iport" -V mqttv5
    --cert "$demo/cloud-app.cert.pem" --key "$demo/cloud-app.key.pem")
  local where ready keys_at dcm_at stop upstream
  if [ "$1" = image ]; then
    where="ggcore image in QEMU (the guest's MQTT port 8883 is forwarded to 127.0.0.1:$port; the guest calls ggcloud at 10.0.2.2:$cport)"
    ready='Once the console below says "MQTT server certificate renewed" ("loaded" with a data disk kept from the last run)'
    upstream="the console"
    dcm_at="on the guest's data disk ($build/demo-disk.img, kept between runs; make run FRESH=1 makes it afresh from $demo)"
    stop="Ctrl-C stops QEMU (and its swtpm), then ggcloud."
  else
    where="ggcore on this machine, on 127.0.0.1:$port"
    ready='Once ggcore logs "MQTT server certificate renewed" (or "... loaded", on later runs)'
    upstream="ggcore"
    dcm_at="in $demo/write/dcm"
    stop="Ctrl-C stops ggcore, then ggcloud${tpmdir:+, then swtpm}."
  fi
  if [ -n "$tpmdir" ]; then keys_at="in the emulated TPM (swtpm, state in $tpmdir)"; else keys_at="in files under $demo/certs"; fi
  cat <<TXT

== $where
   core "demo-core", devices "sensor" and "display"; subscriptions sensor -> display and
   sensor -> cloud on sensors/sensor/#, cloud -> display on commands/display/#
   control plane: ggcloud on 127.0.0.1:$cport (log $cloud_log); the core gets its MQTT server
   certificate from it (signed by the group CA) and reports 127.0.0.1:$port as its address;
   ggcloud's MQTT broker on 127.0.0.1:$iport stands in for AWS IoT Core (the core's upstream)

$ready, in another terminal, receive as "display":
  mosquitto_sub ${tls[*]} --cert $demo/devices/display.cert.pem --key $demo/devices/display.key.pem -i display -t 'sensors/#' -t 'commands/#' -v

publish as "sensor":
  mosquitto_pub ${tls[*]} --cert $demo/devices/sensor.cert.pem --key $demo/devices/sensor.key.pem -i sensor -t sensors/sensor/temperature -m 21.5

Once ${upstream} says "connected upstream" (the core's link to ggcloud's broker), see the
sensor's messages arrive in the cloud, as the cloud application "demo-cloud-app":
  mosquitto_sub ${cloud[*]} -i demo-cloud-app -t 'sensors/#' -v

send "display" a command from the cloud (its mosquitto_sub above prints it; another client ID,
demo-cloud-app-*, since a second connection under one client ID takes the first one's place):
  mosquitto_pub ${cloud[*]} -i demo-cloud-app-cmd -t commands/display/hello -m 'hello from the cloud'
ggcloud's broker refuses what the AWS IoT policies do not allow (demo-core-bridge on the core's
certificate, demo-cloud-app on the application's) and logs it as "mqtt request refused" in $cloud_log.

and discover the core as "sensor" (Greengrass Discovery API: the core's address and the group CA):
  curl --cert $demo/devices/sensor.cert.pem --key $demo/devices/sensor.key.pem --cacert $demo/certs/root.ca.pem https://127.0.0.1:$cport/greengrass/discover/thing/sensor

The control plane's view (also: thing list, group list):
  $bin/ggcloud --data $cloud_data connectivity get demo-core
Where state lives: the fleet (config.json, CAs, certificates, device keys, group.json) in $demo;
the core's keys $keys_at; ggcloud's data in $cloud_data;
the MQTT server certificate $dcm_at.
Start afresh: rm -rf $demo ${tpmdir:+$tpmdir }$cloud_data
$stop

TXT
}
