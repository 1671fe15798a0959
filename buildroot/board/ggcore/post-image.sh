#!/usr/bin/env bash
# post-image.sh BINARIES_DIR BOARD: lays out ggcore's A/B image
# (genimage.cfg) from Buildroot's outputs, BOARD being qemu-virt or rpi4
# (BR2_ROOTFS_POST_SCRIPT_ARGS). The boot partition gets the first stage:
# the kernel (Image) and ggboot's initramfs, BINARIES_DIR/ggboot.cpio.xz
# (tools/ggsysdisk initramfs, with the fleet's release public key in it).
# Slot A gets BINARIES_DIR/release.rel, this build's kernel and
# rootfs.cpio.xz signed as a release (ggprov release sign, with the key
# kept off the build machine where possible); slot B stays empty; the
# data partition is left empty (initramfs/disk.sh makes a gateway's from
# its ggprov bundle; README says how to write it).
set -euo pipefail
binaries=${1:?usage: post-image.sh BINARIES_DIR BOARD}
board=${2:?usage: post-image.sh BINARIES_DIR BOARD}
here=$(cd "$(dirname "$0")" && pwd)

for f in ggboot.cpio.xz release.rel; do
  if [ ! -f "$binaries/$f" ]; then
    echo "post-image: $binaries/$f is missing: make ggboot's initramfs (tools/ggsysdisk initramfs) and sign Image + rootfs.cpio.xz (ggprov release sign) first" >&2
    exit 1
  fi
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/root/boot" "$stage/root/data"

case "$board" in
  qemu-virt)
    disk=/dev/vda4
    system=/dev/vda
    ;;
  rpi4)
    disk=/dev/mmcblk0p4
    system=/dev/mmcblk0
    cp -r "$binaries"/rpi-firmware/* "$stage/root/boot/"
    cp "$binaries"/*.dtb "$stage/root/boot/"
    cp "$binaries/u-boot.bin" "$stage/root/boot/"
    ;;
  *) echo "post-image: unknown board $board (want qemu-virt or rpi4)" >&2; exit 2 ;;
esac
cp "$binaries/boot.scr" "$stage/root/boot/"
cat >"$stage/root/boot/ggboot.env" <<ENV
GGCORE_DISK=$disk
GGCORE_SYSTEM=$system
GGCORE_STATE=$system@1048576
GGCORE_CONSOLE=ttyAMA0,115200
ENV

# The first stage: never updated over the air.
cp "$binaries/Image" "$stage/root/boot/Image"
cp "$binaries/ggboot.cpio.xz" "$stage/root/boot/initramfs.cpio.xz"

genimage --rootpath "$stage/root" --tmppath "$stage/tmp" --inputpath "$binaries" \
  --outputpath "$binaries" --config "$here/genimage.cfg"
echo "post-image: $binaries/sdcard.img (boot with the first stage, slot A, slot B, data) for $board"
