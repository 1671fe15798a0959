#!/usr/bin/env bash
# kernel-build.sh ARCH OUT [--config-only]: builds ggcore's own kernel for
# ARCH (amd64 or arm64) from Debian's linux-source-6.1: `make allnoconfig`,
# then buildroot/board/ggcore/linux-ARCH.fragment merged on top
# (scripts/kconfig/merge_config.sh), then a check that every option the
# fragment sets ended up so in .config (Kconfig drops an option silently
# when a dependency is missing), then the build (nice -n 19, -j2 unless
# GGCORE_KERNEL_JOBS says otherwise). Prints the directory holding
#   Image (arm64) or bzImage (amd64), config, build.log, kernel.json
# The result is cached by the hash of the fragment, the linux-source
# version and the compiler version: under OUT/<hash>, and under
# $GGCORE_KERNEL_CACHE/<hash> when that is set (a cache outside the clone
# that several clones, or CI runs, share). The source tree and object
# files are kept in OUT/work/ARCH so that a changed fragment rebuilds only
# what changed. Progress goes to stderr, a line a stage; the compiler's
# output goes to build.log, whose tail is printed on failure.
# --config-only stops after the check and prints the path of the .config.
set -euo pipefail
arch=${1:?usage: kernel-build.sh amd64|arm64 OUTDIR [--config-only]}
out=${2:?usage: kernel-build.sh amd64|arm64 OUTDIR [--config-only]}
mode=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
fragment="$root/buildroot/board/ggcore/linux-$arch.fragment"
tarball=/usr/src/linux-source-6.1.tar.xz
jobs=${GGCORE_KERNEL_JOBS:-2}
step() { echo "== kernel $arch: $*" >&2; }
fail() { echo "kernel $arch: $*" >&2; exit 1; }

case "$arch" in
  amd64) karch=x86_64 cross="" image=arch/x86/boot/bzImage name=bzImage cc=gcc ;;
  arm64) karch=arm64 cross=aarch64-linux-gnu- image=arch/arm64/boot/Image name=Image cc=aarch64-linux-gnu-gcc ;;
  *) echo "kernel: unknown arch $arch (want amd64 or arm64)" >&2; exit 2 ;;
esac
[ -f "$fragment" ] || fail "no fragment $fragment"
[ -f "$tarball" ] || fail "no $tarball: apt-get install linux-source-6.1 (make deps installs it)"
command -v "$cc" >/dev/null || fail "no $cc: apt-get install $([ "$arch" = arm64 ] && echo gcc-aarch64-linux-gnu || echo gcc) (make deps installs it)"
for t in bc flex bison make; do command -v "$t" >/dev/null || fail "no $t: make deps installs it"; done

srcver=$(dpkg-query -W -f '${Version}' linux-source-6.1 2>/dev/null || stat -c %Y "$tarball")
ccver=$("$cc" -dumpfullversion 2>/dev/null || "$cc" -dumpversion)
# The cache key: what decides the kernel's bytes.
hash=$( { cat "$fragment"; echo "linux-source-6.1 $srcver"; echo "$cc $ccver"; echo "$karch"; } | sha256sum | cut -c1-16)
mkdir -p "$out"
out=$(cd "$out" && pwd)
dir="$out/$arch-$hash"
shared=${GGCORE_KERNEL_CACHE:+$GGCORE_KERNEL_CACHE/$arch-$hash}

# One build per architecture at a time (make test, make kernel and a
# developer's make image may run side by side); a second one waits, then
# finds the first one's result.
mkdir -p "$out/work"
exec 9>"$out/work/$arch.lock"
flock -n 9 || { step "waiting for another build of this kernel to finish"; flock 9; }

# share DIR: copies this build's result into the shared cache.
share() {
  [ -n "$shared" ] || return 0
  mkdir -p "$(dirname "$shared")" && rm -rf "$shared.tmp" && cp -a "$dir" "$shared.tmp" && rm -rf "$shared" && mv "$shared.tmp" "$shared" ||
    echo "kernel $arch: could not write the shared cache $shared (kept $dir)" >&2
}

if [ "$mode" != --config-only ]; then
  if [ -f "$dir/.complete" ]; then
    [ -z "$shared" ] || [ -f "${shared}/.complete" ] || share
    echo "$dir"
    exit 0
  fi
  if [ -n "$shared" ] && [ -f "${shared}/.complete" ]; then
    step "from the shared cache $shared"
    rm -rf "$dir.tmp" && cp -a "$shared" "$dir.tmp" && rm -rf "$dir" && mv "$dir.tmp" "$dir"
    echo "$dir"
    exit 0
  fi
fi

# The source, unpacked once per linux-source version (and shared by both
# architectures: the object files go to work/ARCH).
src="$out/work/linux-source-$srcver"
if [ ! -f "$src/.complete" ]; then
  step "unpacking $tarball ($srcver)"
  rm -rf "$src" && mkdir -p "$src"
  tar -xJf "$tarball" -C "$src" --strip-components=1
  touch "$src/.complete"
fi
obj="$out/work/$arch"
mkdir -p "$obj"
log="$obj/build.log"
: >"$log"
kmake() {
  nice -n 19 make -C "$src" O="$obj" ARCH="$karch" ${cross:+CROSS_COMPILE=$cross} \
    KBUILD_BUILD_USER=ggcore KBUILD_BUILD_HOST=ggcore KBUILD_BUILD_TIMESTAMP="linux-source $srcver" "$@" >>"$log" 2>&1 || {
    echo "kernel $arch: make $* failed; the end of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  }
}

step "configuring: allnoconfig + $(basename "$fragment")"
cp "$fragment" "$obj/fragment.config"
# A fresh .config every time: nothing from an earlier fragment survives.
rm -f "$obj/.config"
kmake allnoconfig
(cd "$obj" && ARCH="$karch" CROSS_COMPILE="$cross" "$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$obj/fragment.config" >>"$log" 2>&1) ||
  { tail -n 40 "$log" >&2; fail "merge_config.sh failed"; }
kmake olddefconfig

# Every option the fragment sets must be set the same in .config.
missing=()
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) grep -qxF "$line" "$obj/.config" || missing+=("$line (.config: $(grep -E "^(# )?${line%%=*}[= ]" "$obj/.config" || echo absent))") ;;
    "# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}; ! grep -q "^$opt=" "$obj/.config" || missing+=("$line (.config: $(grep "^$opt=" "$obj/.config"))") ;;
  esac
done <"$fragment"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "kernel $arch: these options of $(basename "$fragment") did not end up in .config (a dependency is missing, or the option does not exist):" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
if [ "$mode" = --config-only ]; then
  echo "$obj/.config"
  exit 0
fi

step "compiling with $cc $ccver (make -j$jobs under nice; log in $log)"
start=$(date +%s)
kmake -j"$jobs" "$name" &
pid=$!
# A line a minute, so that a long build shows it is alive.
while kill -0 "$pid" 2>/dev/null; do
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null && step "compiling, $(($(date +%s) - start)) s, $(grep -c '^  CC' "$log" || true) files so far"
done
wait "$pid"
secs=$(($(date +%s) - start))

rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
cp "$obj/$image" "$dir.tmp/$name"
cp "$obj/.config" "$dir.tmp/config"
cp "$fragment" "$dir.tmp/fragment"
cp "$log" "$dir.tmp/build.log"
release=$(cat "$obj/include/config/kernel.release")
cat >"$dir.tmp/kernel.json" <<JSON
{
  "arch": "$arch",
  "release": "$release",
  "image": "$name",
  "size": $(stat -c %s "$dir.tmp/$name"),
  "fragment_sha256": "$(sha256sum "$fragment" | cut -d' ' -f1)",
  "linux_source": "$srcver",
  "compiler": "$cc $ccver",
  "build_seconds": $secs
}
JSON
touch "$dir.tmp/.complete"
rm -rf "$dir" && mv "$dir.tmp" "$dir"
share
step "done in $secs s: $dir/$name ($(($(stat -c %s "$dir/$name") / 1024)) KiB, $release)"
echo "$dir"
