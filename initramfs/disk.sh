#!/usr/bin/env bash
# disk.sh BUNDLE OUT.img [SIZE]: builds the image's data partition (ext4,
# label greengrass, default 64M) from a ggprov bundle with `mke2fs -d`, so
# no root mount is needed. The bundle is laid out as the image mounts it:
#   /greengrass/config/config.json   the bundle's config.json, paths rewritten to /greengrass,
#                                    the TPM at /dev/tpmrm0, the MQTT server on every interface,
#                                    ggcore.time.setClock true unless ggcore.time is set
#   /greengrass/certs, /greengrass/devices, /greengrass/write (without the
#                                    host's device certificate manager state)
#   /greengrass/softhsm              SOFTHSM_DIR's tokens, when set (pkcs11 flavor), with
#                                    /greengrass/config/softhsm2.conf and the PIN file
# The private keys of the devices are left out: they belong on the devices.
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin" # mke2fs
bundle=${1:?usage: disk.sh BUNDLE OUT.img [SIZE]}
img=${2:?usage: disk.sh BUNDLE OUT.img [SIZE]}
size=${3:-64M}
bundle=$(cd "$bundle" && pwd)
[ -f "$bundle/config.json" ] || { echo "disk: $bundle has no config.json (make it with ggprov init)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/config"
cp -a "$bundle/write" "$stage/"
# The device certificate manager's state on the host (state.json and the
# keys it made) names host paths: the gateway makes its own.
rm -f "$stage/write/dcm/state.json" "$stage"/write/dcm/mqtt-server-[0-9]*
# The CAs' keys (*.key) stay with whoever provisions: a gateway holds
# only its own keys (TPM-wrapped or in its token) and certificates.
mkdir -p "$stage/certs"
find "$bundle/certs" -maxdepth 1 -type f ! -name '*.key' -exec cp -p {} "$stage/certs/" \;
mkdir -p "$stage/devices"
cp "$bundle"/devices/*.cert.pem "$stage/devices/" 2>/dev/null || true
esc=$(printf '%s' "$bundle" | sed 's/[.[\*^$|]/\\&/g')
sed -e "s|file://$esc/|file:///greengrass/|g" -e "s|\"$esc/|\"/greengrass/|g" -e "s|\"$esc\"|\"/greengrass/write\"|g" \
  -e 's|"device": "[^"]*"|"device": "/dev/tpmrm0"|' \
  -e 's|"localMqttBind": "[^"]*"|"localMqttBind": "0.0.0.0"|' \
  "$bundle/config.json" >"$stage/config/config.json"

# A gateway has no battery-backed clock: ggcore sets it (from
# ggcore.time.ntpServers, else the control plane's HTTPS Date) unless the
# bundle's config says otherwise in ggcore.time.
if ! grep -q '"time"[[:space:]]*:' "$stage/config/config.json"; then
  if grep -q '^[[:space:]]*"ggcore":[[:space:]]*{[[:space:]]*$' "$stage/config/config.json"; then
    sed -i 's|^\([[:space:]]*\)"ggcore":[[:space:]]*{[[:space:]]*$|&\n\1  "time": {"setClock": true},|' "$stage/config/config.json"
  else
    echo "disk: config.json's ggcore object is not on lines of its own; add \"time\": {\"setClock\": true} to it for the gateway to set its clock" >&2
  fi
fi

if [ -n "${SOFTHSM_DIR:-}" ]; then
  cp -a "$SOFTHSM_DIR" "$stage/softhsm"
  printf 'directories.tokendir = /greengrass/softhsm\nobjectstore.backend = file\nlog.level = ERROR\n' >"$stage/config/softhsm2.conf"
  if [ -n "${PIN_FILE:-}" ]; then
    cp "$PIN_FILE" "$stage/config/token.pin"
    chmod 600 "$stage/config/token.pin"
    sed -i "s|pin-source=[^\"&]*|pin-source=file:///greengrass/config/token.pin|g" "$stage/config/config.json"
  fi
fi

if grep -q "$bundle" "$stage/config/config.json"; then
  echo "disk: config.json still names $bundle after rewriting; refusing to build a disk that cannot work" >&2
  exit 1
fi
rm -f "$img"
mke2fs -q -t ext4 -L greengrass -E root_owner=0:0 -d "$stage" "$img" "$size"
echo "disk: $img ($size ext4) from $bundle" >&2
