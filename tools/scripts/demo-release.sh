#!/usr/bin/env bash
# demo-release.sh [BUILD]: the over-the-air update of `make run`. While
# `make run` boots the gateway, this signs the image in BUILD/images as
# the next release (version 1.0.N, security version N, one more than the
# last: BUILD/demo-release.sv keeps it) with the development release key
# BUILD/release-key.pem, and deploys it to the demo group through ggcloud
# (ggcloud group deploy --firmware). The gateway's console then shows the
# download into the inactive slot, the reboot, ggboot trying the new slot,
# and the core's health check and commit; this script waits for the
# deployment's outcome and prints it.
#   DEMO_RELEASE_WAIT  seconds to wait for Success or Failure (default 600)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
bin="$build/bin"
images="$build/images"
cloud_data="$build/ggcloud"
die() {
  echo "demo-release: $*" >&2
  exit 1
}
for f in "$bin/ggprov" "$bin/ggcloud" "$build/release-key.pem" "$images/ggcore-tpm-amd64.json" "$images/vmlinuz-amd64" "$cloud_data/demo-group"; do
  [ -e "$f" ] || die "$f is missing: start the gateway with make run first (it builds and provisions everything this needs)"
done
initrd="$images/$(sed -n 's/^ *"image": "\(.*\)",$/\1/p' "$images/ggcore-tpm-amd64.json")"
[ -f "$initrd" ] || die "the image's initramfs ($initrd) is missing: run make run again"

sv=$(($(cat "$build/demo-release.sv" 2>/dev/null || echo 1) + 1))
version="1.0.$sv"
mkdir -p "$build/releases"
rel="$build/releases/ggcore-tpm-amd64-$version.rel"
echo "== signing the image as release $version (security version $sv) with $build/release-key.pem" >&2
"$bin/ggprov" release sign --kernel "$images/vmlinuz-amd64" --initramfs "$initrd" --arch amd64 --board qemu-q35 \
  --flavor tpm --version "$version" --security-version "$sv" --key "$build/release-key.pem" --out "$rel" >&2
group=$(cat "$cloud_data/demo-group")
echo "== deploying it to group $group (ggcloud group deploy --firmware); watch the gateway's console" >&2
out=$("$bin/ggcloud" --data "$cloud_data" group deploy "$group" --firmware "$rel") || die "ggcloud group deploy failed: $out"
deployment=${out##* }
# The gateway's TPM counter moves to $sv once the new slot is committed;
# later demo images must not be older (make run signs its first slot with
# this number too).
echo "$sv" >"$build/demo-release.sv"

wait_s=${DEMO_RELEASE_WAIT:-600}
echo "== deployment $deployment: waiting up to ${wait_s}s for its outcome" >&2
last=
for ((i = 0; i < wait_s; i += 2)); do
  status=$("$bin/ggcloud" --data "$cloud_data" deployment status "$group" "$deployment" 2>&1 || true)
  if [ "$status" != "$last" ]; then
    echo "$status"
    last=$status
  fi
  case $status in
    *Success*) echo "== release $version is committed: the gateway runs it from its other slot" >&2; exit 0 ;;
    *Failure*) echo "== release $version failed (the gateway is back on its previous slot)" >&2; exit 1 ;;
  esac
  sleep 2
done
die "no outcome after ${wait_s}s; the gateway's console says where it stands"
