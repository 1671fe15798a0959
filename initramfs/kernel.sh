#!/usr/bin/env bash
# kernel.sh ARCH OUT: fetches Debian's kernel for ARCH (amd64 or arm64)
# with `apt-get download` into OUT (cached by package version) and prints
# the directory that holds vmlinuz, config and lib/modules/<release>.
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin" # depmod
arch=${1:?usage: kernel.sh amd64|arm64 OUTDIR}
out=${2:?usage: kernel.sh amd64|arm64 OUTDIR}
case "$arch" in amd64 | arm64) ;; *) echo "kernel: unknown arch $arch (want amd64 or arm64)" >&2; exit 2 ;; esac

host=$(dpkg --print-architecture)
if [ "$arch" != "$host" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "kernel: Debian's $arch packages are not enabled; as root: dpkg --add-architecture $arch && apt-get update" >&2
    exit 1
  fi
  echo "kernel: enabling Debian's $arch packages (dpkg --add-architecture $arch; apt-get update)" >&2
  dpkg --add-architecture "$arch"
  apt-get update -q >/dev/null
fi

# linux-image-ARCH is a meta package; its one dependency is the real image.
meta="linux-image-$arch:$arch"
pkg=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\).*/\1/p' | head -n1)
if [ -z "$pkg" ]; then
  echo "kernel: apt-cache knows no $meta; run apt-get update" >&2
  exit 1
fi
pkg=${pkg%:*}
version=$(apt-cache show "$pkg:$arch" | sed -n 's/^Version: //p' | head -n1)
dir="$out/$arch/$pkg-$version"
if [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi
echo "kernel: downloading $pkg $version ($arch) with apt-get download" >&2
rm -rf "$dir" && mkdir -p "$dir"
(cd "$dir" && apt-get download -q "$pkg:$arch" >/dev/null 2>&1) || {
  echo "kernel: apt-get download $pkg:$arch failed" >&2
  exit 1
}
deb=$(ls "$dir"/*.deb)
mkdir -p "$dir/root"
dpkg-deb -x "$deb" "$dir/root"
rm -f "$deb"
cp "$dir"/root/boot/vmlinuz-* "$dir/vmlinuz"
cp "$dir"/root/boot/config-* "$dir/config"
mv "$dir/root/lib" "$dir/lib"
rm -rf "$dir/root"
# The package ships no modules.dep (depmod writes it on install).
release=$(ls "$dir/lib/modules")
depmod -b "$dir" "$release"
touch "$dir/.complete"
echo "$dir"
