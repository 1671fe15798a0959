#!/usr/bin/env bash
# system-disk.sh FLAVOR ARCH [BUILD]: builds what the first stage boots, into
# BUILD/images (BUILD defaults to build):
#   ggboot-FLAVOR-ARCH.cpio       the first stage's initramfs: ggboot as /init,
#                                 the release public key, the compatible triple
#   release-FLAVOR-ARCH.rel       the image FLAVOR/ARCH (initramfs/build.sh,
#                                 built when missing or older than the key;
#                                 it trusts the key for updates) as a signed
#                                 release
#   system-FLAVOR-ARCH.img        the system disk: MBR, partition 1 slot state
#                                 (1 MiB, empty: ggboot boots slot A),
#                                 partition 2 slot A (the release),
#                                 partition 3 slot B (empty); slots sized to
#                                 the release (twice it, at least 16 MiB)
# QEMU boots it with the image's kernel and the first stage's initramfs:
#   GGCORE_SYSTEM_DISK=BUILD/images/system-FLAVOR-ARCH.img \
#     initramfs/qemu.sh ARCH BUILD/images/ggboot-FLAVOR-ARCH.cpio BUILD/images/vmlinuz-ARCH DATA PORT
# The release signing key is a development key made once in
# BUILD/release-key.pem (BUILD is never committed; a real fleet signs with
# ggprov release sign --key pkcs11:...). GGCORE_RELEASE_VERSION (default
# 1.0.0) and GGCORE_RELEASE_SV (security version, default 1) describe the
# release.
set -euo pipefail
flavor=${1:?usage: system-disk.sh tpm|pkcs11|debug amd64|arm64 [BUILD]}
arch=${2:?usage: system-disk.sh tpm|pkcs11|debug amd64|arm64 [BUILD]}
build=${3:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mkdir -p "$build/images"
build=$(cd "$build" && pwd)
out="$build/images"
step() { echo "== system disk $flavor/$arch: $*" >&2; }
case "$arch" in
  amd64) board=qemu-q35 ;;
  arm64) board=qemu-virt ;;
  *) echo "system-disk: unknown arch $arch (want amd64 or arm64)" >&2; exit 2 ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
(cd "$root" && go build -o "$stage/ggprov" ./tools/ggprov && go build -o "$stage/ggsysdisk" ./tools/ggsysdisk)

key="$build/release-key.pem"
pub="$build/release-key.pub.pem"
if [ ! -f "$key" ]; then
  step "making a development release key in $key"
  "$stage/ggprov" release keygen --out "$key" --pub "$pub" >&2
fi

# The image, with the key in it (build.sh adds BUILD/release-key.pub.pem):
# built when missing or older than the key.
if [ ! -f "$out/ggcore-$flavor-$arch.json" ] || [ ! -f "$out/vmlinuz-$arch" ] || [ "$out/ggcore-$flavor-$arch.json" -ot "$pub" ]; then
  "$here/build.sh" "$flavor" "$arch" "$build"
fi
# The image's initramfs, as its manifest names it (its compression varies).
initrd="$out/$(sed -n 's/^ *"image": "\(.*\)",$/\1/p' "$out/ggcore-$flavor-$arch.json")"
[ -f "$initrd" ] || { echo "system-disk: no initramfs in $out/ggcore-$flavor-$arch.json" >&2; exit 1; }

step "building ggboot (GOARCH=$arch, CGO_ENABLED=0, static)"
(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false \
  -ldflags "-s -w -buildid=" -o "$stage/ggboot" ./initramfs/cmd/ggboot)
"$stage/ggsysdisk" initramfs --out "$out/ggboot-$flavor-$arch.cpio" --init "$stage/ggboot" --key "$pub" \
  --arch "$arch" --board "$board" --flavor "$flavor"

step "signing the image as release ${GGCORE_RELEASE_VERSION:-1.0.0} (security version ${GGCORE_RELEASE_SV:-1})"
"$stage/ggprov" release sign --kernel "$out/vmlinuz-$arch" --initramfs "$initrd" \
  --arch "$arch" --board "$board" --flavor "$flavor" --version "${GGCORE_RELEASE_VERSION:-1.0.0}" \
  --security-version "${GGCORE_RELEASE_SV:-1}" --key "$key" --out "$out/release-$flavor-$arch.rel" >&2

step "writing the system disk"
"$stage/ggsysdisk" disk --out "$out/system-$flavor-$arch.img" --slot-a "$out/release-$flavor-$arch.rel" >&2
step "done: $out/ggboot-$flavor-$arch.cpio, $out/system-$flavor-$arch.img"
