#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup and stop_qemu run from traps
# make run: provisions a demo fleet (core demo-core, devices sensor and
# display; subscriptions sensor -> display and sensor -> cloud on
# sensors/sensor/#, cloud -> display on commands/display/#) into
# BUILD/demo once, with the core's keys in an emulated TPM (swtpm, state
# in BUILD/demo-tpm); starts the control plane (ggcloud on 127.0.0.1:8443,
# its MQTT broker standing in for AWS IoT Core on 127.0.0.1:8884, data in
# BUILD/ggcloud), registers the fleet and the cloud-side application
# demo-cloud-app in it; builds the data disk; boots the tpm image
# (BUILD/images) in QEMU with that TPM, the guest's MQTT port forwarded to
# 127.0.0.1:8883; and prints the mosquitto and curl lines a device and the
# cloud application use from the host. The guest reaches ggcloud and its
# broker as 10.0.2.2 (QEMU user networking's name for the host), gets its
# MQTT server certificate from it and connects upstream to the broker.
# Ctrl-C stops QEMU (and its swtpm), then ggcloud. The data disk
# (BUILD/demo-disk.img, the gateway's state) is kept for the next run
# unless the fleet changed, and the system disk (BUILD/demo-system.img,
# ggboot's A/B slots) unless the image changed; FRESH=1 (make run
# FRESH=1) rebuilds both. tools/scripts/demo-release.sh deploys the image
# as a new release over the air.
# GGCORE_DEMO_MODE=host runs the core on the host instead (demo.sh).
#   GGCORE_DEMO_PORT        the host port forwarded to the guest's 8883 (default 8883)
#   GGCORE_DEMO_CLOUD_PORT  ggcloud's port (default 8443)
#   GGCORE_DEMO_IOT_PORT    ggcloud's MQTT broker's port (default 8884)
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin" # mke2fs (disk.sh)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tools/scripts/ggcloud-demo.sh
. "$here/ggcloud-demo.sh"
demo_init "${1:-build}"
# The initramfs as the image's manifest names it (.cpio.lz4 by default).
image="$build/images/$(sed -n 's/^ *"image": "\(.*\)",$/\1/p' "$build/images/ggcore-tpm-amd64.json" 2>/dev/null)"
kernel="$build/images/vmlinuz-amd64"
for f in "$image" "$kernel"; do
  [ -f "$f" ] || demo_die "$f is missing: build the image with make image (make run does it)"
done
command -v qemu-system-x86_64 >/dev/null 2>&1 || demo_die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"

qemu_sh=
# stop_qemu: SIGTERM to QEMU itself (qemu.sh's child), whose clean exit
# ends qemu.sh, which then stops its swtpm.
stop_qemu() {
  [ -n "$qemu_sh" ] || return 0
  local q
  q=$(ps -o pid=,comm= --ppid "$qemu_sh" 2>/dev/null | awk '$2 ~ /^qemu-system/ {print $1}')
  if [ -n "$q" ]; then
    demo_stop "$q" QEMU
  fi
  demo_stop "$qemu_sh" "qemu.sh and its swtpm"
}
cleanup() {
  # Stop everything even when the terminal is gone (writes fail then).
  set +e
  trap '' INT TERM HUP
  stop_qemu
  demo_stop "$cloud_pid" ggcloud
}
trap cleanup EXIT
trap 'exit 0' INT TERM HUP

demo_port_free "$port" "the demo's MQTT port, forwarded to the guest" GGCORE_DEMO_PORT
demo_port_free "$cport" "ggcloud, the demo's control plane" GGCORE_DEMO_CLOUD_PORT
demo_port_free "$iport" "ggcloud's MQTT broker, the core's upstream" GGCORE_DEMO_IOT_PORT
# The guest listens on 8883; QEMU forwards 127.0.0.1:PORT to it.
demo_bundle 8883
demo_start_ggcloud
demo_register 10.0.2.2
# The data disk is the gateway's state (its MQTT server certificate from
# ggcloud, the cloud spool, deployments, sessions): kept between runs,
# rebuilt from the fleet when the fleet changed or with FRESH=1.
disk="$build/demo-disk.img"
stamp="$build/demo-disk.fleet"
fleet=$(cd "$demo" && cat config.json certs/*.pem devices/*.cert.pem 2>/dev/null | sha256sum | cut -d' ' -f1)
reason=
if [ "${FRESH:-0}" = 1 ]; then
  reason="FRESH=1"
elif [ ! -f "$disk" ]; then
  reason="none yet"
elif [ "$(cat "$stamp" 2>/dev/null)" != "$fleet" ]; then
  reason="the fleet in $demo changed since it was made"
fi
if [ -n "$reason" ]; then
  echo "== building the data disk $disk ($reason)" >&2
  rm -f "$stamp"
  "$root/initramfs/disk.sh" "$demo" "$disk" || demo_die "disk.sh could not build the data disk"
  echo "$fleet" >"$stamp"
else
  echo "== keeping the data disk $disk from the last run (the core's certificate, spool and deployments); make run FRESH=1 starts the gateway afresh" >&2
fi
# The system disk: the slot state and the A/B slots, slot A holding the
# image as a release signed with the development key BUILD/release-key.pem
# (initramfs/system-disk.sh). QEMU boots ggboot, the first stage, which
# verifies and kexecs the slot. Kept between runs like the data disk (an
# update committed to slot B stays), and made afresh when the image
# changed or with FRESH=1. Its release's security version is the last one
# demo-release.sh deployed: the TPM's counter may already be there.
sysdisk="$build/demo-system.img"
sysstamp="$build/demo-system.image"
sv=$(cat "$build/demo-release.sv" 2>/dev/null || echo 1)
imagesum=$(sha256sum "$image" | cut -d' ' -f1)
reason=
if [ "${FRESH:-0}" = 1 ]; then
  reason="FRESH=1"
elif [ ! -f "$sysdisk" ]; then
  reason="none yet"
elif [ "$(cat "$sysstamp" 2>/dev/null)" != "$imagesum" ]; then
  reason="the image changed since it was made"
fi
if [ -n "$reason" ]; then
  echo "== building the system disk $sysdisk ($reason): slot A holds release 1.0.$sv" >&2
  GGCORE_RELEASE_VERSION="1.0.$sv" GGCORE_RELEASE_SV="$sv" "$root/initramfs/system-disk.sh" tpm amd64 "$build" ||
    demo_die "system-disk.sh could not build the system disk"
  # system-disk.sh rebuilds the image when the release key is newer.
  image="$build/images/$(sed -n 's/^ *"image": "\(.*\)",$/\1/p' "$build/images/ggcore-tpm-amd64.json")"
  cp "$build/images/system-tpm-amd64.img" "$sysdisk"
  sha256sum "$image" | cut -d' ' -f1 >"$sysstamp"
else
  echo "== keeping the system disk $sysdisk from the last run (its slots and slot state)" >&2
fi
ggboot="$build/images/ggboot-tpm-amd64.cpio"
[ -f "$ggboot" ] || demo_die "$ggboot is missing: make run FRESH=1 builds it"
demo_print image
cat <<TXT
An over-the-air update: in another terminal, sign the image as the next release and deploy it
(the console shows the download into the other slot, the reboot, ggboot's trial of that slot,
and the core's health check and commit; the command waits for the outcome):
  tools/scripts/demo-release.sh $build

TXT

# QEMU runs in this process group, so that Ctrl-C reaches it (it stops
# cleanly on SIGINT), with the terminal as its serial console. A reboot
# (an update) starts ggboot again rather than ending QEMU.
GGCORE_SYSTEM_DISK="$sysdisk" GGCORE_QEMU_REBOOT=1 \
  "$root/initramfs/qemu.sh" amd64 "$ggboot" "$kernel" "$disk" "$port" "$tpmdir" <&0 &
qemu_sh=$!
status=0
wait -n -p finished "$qemu_sh" "$cloud_pid" || status=$?
if [ "${finished:-}" = "$cloud_pid" ]; then
  cloud_pid=
  echo "demo: ggcloud stopped unexpectedly (status $status); its log: $cloud_log" >&2
  exit 1
fi
qemu_sh=
echo "demo: QEMU exited (status $status)" >&2
exit "$status"
