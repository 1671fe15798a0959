#!/usr/bin/env bash
# Installs what `make test`, `make run` and `make bench` need: Debian
# packages (as root, via apt-get) and the Go modules (via the module proxy).
set -euo pipefail

# command -> Debian package that provides it
declare -A need=(
  [mosquitto]=mosquitto
  [mosquitto_pub]=mosquitto-clients
  [mosquitto_sub]=mosquitto-clients
  [openssl]=openssl
  [curl]=curl
  [swtpm]=swtpm
  [softhsm2-util]=softhsm2
  [pkcs11-tool]=opensc
  [gcc]=gcc
  [depmod]=kmod
  [xz]=xz-utils
  [lz4]=lz4
  [mke2fs]=e2fsprogs
  [debugfs]=e2fsprogs
  [qemu-system-x86_64]=qemu-system-x86
  [qemu-system-aarch64]=qemu-system-arm
  # make kernel: Debian's linux-source-6.1, built natively and for arm64
  [make]=make
  [bc]=bc
  [flex]=flex
  [bison]=bison
  [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
)

# file -> Debian package that provides it (libraries and modules)
declare -A needFile=(
  [/usr/lib/softhsm/libsofthsm2.so]=softhsm2
  [/usr/lib/$(uname -m)-linux-gnu/ossl-modules/tpm2.so]=tpm2-openssl
  [/usr/src/linux-source-6.1.tar.xz]=linux-source-6.1
  [/usr/include/openssl/ssl.h]=libssl-dev
  [/usr/include/gelf.h]=libelf-dev
)

missing=()
for cmd in "${!need[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${need[$cmd]}")
  fi
done
for f in "${!needFile[@]}"; do
  [ -e "$f" ] || missing+=("${needFile[$f]}")
done
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]}" >&2
    echo "deps: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || { echo "deps: apt-get update failed" >&2; exit 1; }
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go modules come through the module proxy (GOPROXY), once.
go mod download
echo "deps: ok" >&2
