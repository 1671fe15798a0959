#!/usr/bin/env bash
# post-image.sh BINARIES_DIR BOARD: lays out ggcore's A/B image
# (genimage.cfg) from Buildroot's outputs, BOARD being qemu-virt or rpi4
# (BR2_ROOTFS_POST_SCRIPT_ARGS). Both slots get this build's kernel and
# initramfs; the data partition is left empty (initramfs/disk.sh makes a
# gateway's from its ggprov bundle; README says how to write it).
set -euo pipefail
binaries=${1:?usage: post-image.sh BINARIES_DIR BOARD}
board=${2:?usage: post-image.sh BINARIES_DIR BOARD}
here=$(cd "$(dirname "$0")" && pwd)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/root/boot" "$stage/root/slot-a" "$stage/root/data"

case "$board" in
  qemu-virt)
    disk=/dev/vda4
    ;;
  rpi4)
    disk=/dev/mmcblk0p4
    cp -r "$binaries"/rpi-firmware/* "$stage/root/boot/"
    cp "$binaries"/*.dtb "$stage/root/boot/"
    cp "$binaries/u-boot.bin" "$stage/root/boot/"
    ;;
  *) echo "post-image: unknown board $board (want qemu-virt or rpi4)" >&2; exit 2 ;;
esac
cp "$binaries/boot.scr" "$stage/root/boot/"
cat >"$stage/root/boot/ggboot.env" <<ENV
BOOT_ORDER=A B
BOOT_A_LEFT=3
BOOT_B_LEFT=3
GGCORE_DISK=$disk
GGCORE_CONSOLE=ttyAMA0,115200
ENV

cp "$binaries/Image" "$stage/root/slot-a/Image"
cp "$binaries/rootfs.cpio.xz" "$stage/root/slot-a/initramfs.cpio.xz"
(cd "$stage/root/slot-a" && sha256sum Image initramfs.cpio.xz >SHA256SUMS)
cp -a "$stage/root/slot-a" "$stage/root/slot-b"

genimage --rootpath "$stage/root" --tmppath "$stage/tmp" --inputpath "$binaries" \
  --outputpath "$binaries" --config "$here/genimage.cfg"
echo "post-image: $binaries/sdcard.img (boot, slot A, slot B, data) for $board"
