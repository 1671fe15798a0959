#!/usr/bin/env bash
# build.sh FLAVOR ARCH [BUILD]: builds the ggcore firmware image with
# u-root (the version in go.mod) into BUILD/images:
#   ggcore-FLAVOR-ARCH.cpio.lz4  the initramfs (gginit as /init, ggcore)
#   vmlinuz-ARCH                 the kernel it boots with
#   ggcore-FLAVOR-ARCH.json      its manifest: flavor, arch, commit, sha256, sizes
# The kernel is ggcore's own (initramfs/kernel-build.sh: Debian's
# linux-source-6.1 with buildroot/board/ggcore/linux-ARCH.fragment,
# everything built in), cached in BUILD/kernel. GGCORE_KERNEL=debian
# boots Debian's packaged kernel instead (initramfs/kernel.sh), with the
# modules the image needs copied into the initramfs.
# FLAVOR: tpm (static ggcore, no shell), pkcs11 (cgo ggcore + SoftHSM2 and
# the libraries it needs), debug (tpm plus a shell and core tools).
# The initramfs is lz4-compressed (legacy frame, as the kernel reads
# it): under QEMU's TCG the kernel unpacks it ~10x faster than xz
# (~0.06 s instead of ~0.85 s on x86_64), for ~60% more bytes to load.
# GGCORE_INITRD_COMPRESSION=zstd or xz chooses another (the name's
# suffix says which); each needs its CONFIG_RD_ option in the kernel,
# which build.sh checks in the kernel's .config.
# The same commit and kernel build the same bytes.
set -euo pipefail
flavor=${1:?usage: build.sh tpm|pkcs11|debug amd64|arm64 [BUILD]}
arch=${2:?usage: build.sh tpm|pkcs11|debug amd64|arm64 [BUILD]}
build=${3:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mkdir -p "$build/images"
build=$(cd "$build" && pwd)
out="$build/images"
step() { echo "== image $flavor/$arch: $*" >&2; }

case "$flavor" in tpm | pkcs11 | debug) ;; *) echo "image: unknown flavor $flavor (want tpm, pkcs11 or debug)" >&2; exit 2 ;; esac
case "$arch" in amd64 | arm64) ;; *) echo "image: unknown arch $arch (want amd64 or arm64)" >&2; exit 2 ;; esac
if [ "$flavor" = pkcs11 ] && [ "$arch" != "$(dpkg --print-architecture)" ]; then
  echo "image: the pkcs11 flavor builds only for this machine's architecture ($(dpkg --print-architecture)): its cgo ggcore links against this machine's SoftHSM2" >&2
  exit 2
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
files=()

kernel=${GGCORE_KERNEL:-own}
case "$kernel" in
  own)
    step "ggcore's kernel (initramfs/kernel-build.sh, cached in $build/kernel)"
    kdir=$("$here/kernel-build.sh" "$arch" "$build/kernel")
    release=$(sed -n 's/^ *"release": "\(.*\)",$/\1/p' "$kdir/kernel.json")
    kimage="$kdir/$([ "$arch" = amd64 ] && echo bzImage || echo Image)"
    ;;
  debian)
    step "fetching Debian's kernel (cached in $build/kernel)"
    kdir=$("$here/kernel.sh" "$arch" "$build/kernel")
    release=$(ls "$kdir/lib/modules")
    kimage="$kdir/vmlinuz"
    # The kernel modules the boot needs (virtio disk and network, ext4), with
    # every module they depend on, per modules.dep.
    step "selecting kernel modules for $release"
    # crc32c: ext4 asks the crypto API for it, and there is no modprobe to
    # load it on demand.
    want=(virtio_pci virtio_blk virtio_net virtio_rng crc32c_generic ext4)
    moddir="$kdir/lib/modules/$release"
    mkdir -p "$stage/modules/$release"
    cp "$moddir/modules.builtin" "$stage/modules/$release/"
    # gginit loads each line's modules in order, and the lines side by side.
    printf '%s\n' "virtio_pci virtio_blk virtio_net virtio_rng" "crc32c_generic ext4" >"$stage/modules.list"
    : >"$stage/modules/$release/modules.dep"
    for m in "${want[@]}"; do
      line=$(awk -v m="$m" '{ f=$1; sub(":$", "", f); n=f; sub(".*/", "", n); sub("\\.ko.*$", "", n); gsub("-", "_", n); if (n == m) { print; exit } }' "$moddir/modules.dep")
      if [ -z "$line" ]; then
        grep -q "/$m.ko" "$moddir/modules.builtin" || { echo "image: kernel module $m is neither in modules.dep nor built in" >&2; exit 1; }
        continue
      fi
      for f in ${line/:/}; do
        mkdir -p "$stage/modules/$release/$(dirname "$f")"
        cp "$moddir/$f" "$stage/modules/$release/$f"
        # Only the image's own modules in its modules.dep: less to read at boot.
        grep -q "^$f:" "$stage/modules/$release/modules.dep" || grep "^$f:" "$moddir/modules.dep" >>"$stage/modules/$release/modules.dep"
      done
    done
    files+=(-files "$stage/modules:lib/modules" -files "$stage/modules.list:etc/gginit/modules")
    ;;
  *) echo "image: unknown GGCORE_KERNEL=$kernel (want own or debian)" >&2; exit 2 ;;
esac

# The build time (the commit's, so that a commit builds the same bytes):
# the clock's floor, for ggcore (-X main.buildTime) and gginit.
built=${built:-${SOURCE_DATE_EPOCH:-$(cd "$root" && git log -1 --format=%ct 2>/dev/null || echo 0)}}
[ -f "$stage/build-time" ] || printf '%s\n' "$built" >"$stage/build-time"

step "building ggcore (GOARCH=$arch, $([ "$flavor" = pkcs11 ] && echo cgo || echo 'CGO_ENABLED=0, static'))"
cgo=0
[ "$flavor" = pkcs11 ] && cgo=1
(cd "$root" && CGO_ENABLED=$cgo GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false \
  -ldflags "-s -w -buildid= -X main.buildTime=$built" -o "$stage/ggcore" ./core/cmd/ggcore)

files+=(-files "$stage/ggcore:bin/ggcore" -files "$stage/build-time:etc/gginit/build-time")
# The release key updates must be signed with (ggcore.ota.releaseKeys'
# default), when BUILD has one (initramfs/system-disk.sh makes it).
if [ -f "$build/release-key.pub.pem" ]; then
  files+=(-files "$build/release-key.pub.pem:etc/ggcore/release-keys/release-key.pub.pem")
fi
cmds=(./initramfs/cmd/gginit)
shell=(-defaultsh "")
case "$flavor" in
  pkcs11)
    # u-root adds the module's shared libraries (ldd) and those of ggcore.
    # Debian's path is a relative symlink: add the file it names.
    files+=(-files "$(readlink -f /usr/lib/softhsm/libsofthsm2.so):usr/lib/softhsm/libsofthsm2.so")
    ;;
  debug)
    for c in gosh ls cat cp dmesg mount ps ip free df hexdump grep mkdir rm ln uname; do
      cmds+=("github.com/u-root/u-root/cmds/core/$c")
    done
    shell=(-defaultsh gosh)
    ;;
esac

step "assembling the initramfs with u-root"
cpio="$stage/image.cpio"
# u-root itself runs here, so it is built for this machine; GOARCH then
# tells it what to build the image's commands for.
(cd "$root" && env -u GOARCH -u GOOS go build -o "$stage/u-root" github.com/u-root/u-root)
(cd "$root" && GOOS=linux GOARCH=$arch CGO_ENABLED=0 "$stage/u-root" -o "$cpio" -initcmd gginit -uinitcmd="" \
  "${shell[@]}" "${files[@]}" "${cmds[@]}" 2>"$stage/u-root.log") || {
  cat "$stage/u-root.log" >&2
  exit 1
}

name="ggcore-$flavor-$arch"
comp=${GGCORE_INITRD_COMPRESSION:-lz4}
case "$comp" in lz4 | zstd | xz) ;; *) echo "image: unknown GGCORE_INITRD_COMPRESSION=$comp (want lz4, zstd or xz)" >&2; exit 2 ;; esac
# The kernel must unpack it: its .config (ours, or Debian's) has
# CONFIG_RD_LZ4, CONFIG_RD_ZSTD or CONFIG_RD_XZ.
kconfig="$kdir/config"
opt="CONFIG_RD_$(echo "$comp" | tr a-z A-Z)"
if [ -f "$kconfig" ] && ! grep -q "^$opt=y" "$kconfig"; then
  echo "image: the kernel ($kconfig) lacks $opt and could not unpack a $comp initramfs; set GGCORE_INITRD_COMPRESSION" >&2
  exit 1
fi
# Stale images of another compression would be booted by mistake.
rm -f "$out/$name".cpio.{lz4,zstd,xz}
image="$name.cpio.$comp"
step "compressing ($comp, as the kernel reads it)"
case "$comp" in
  lz4) lz4 -q -l -12 --favor-decSpeed -c "$cpio" >"$out/$image" ;;
  zstd) zstd -q -19 -T1 -c "$cpio" >"$out/$image" ;;
  xz) xz -9 --check=crc32 -T1 -c "$cpio" >"$out/$image" ;;
esac
cp "$kimage" "$out/vmlinuz-$arch"

commit=$(cd "$root" && git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(cd "$root" && git status --porcelain 2>/dev/null | grep -q . && echo true || echo false)
sha=$(sha256sum "$out/$image" | cut -d' ' -f1)
cat >"$out/$name.json" <<JSON
{
  "flavor": "$flavor",
  "arch": "$arch",
  "commit": "$commit",
  "dirty": $dirty,
  "build_time": $built,
  "kernel": "$release",
  "image": "$image",
  "compression": "$comp",
  "sha256": "$sha",
  "size": $(stat -c %s "$out/$image"),
  "uncompressed_size": $(stat -c %s "$cpio"),
  "kernel_image": "vmlinuz-$arch"
}
JSON
step "done: $out/$image ($(($(stat -c %s "$out/$image") / 1024)) KiB, sha256 $sha)"
