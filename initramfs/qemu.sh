#!/usr/bin/env bash
# qemu.sh ARCH IMAGE KERNEL DISK|none PORT [TPMSTATE]: boots a ggcore image under
# QEMU (TCG; KVM only when GGCORE_KVM=1 and /dev/kvm works), with the data
# disk as a virtio disk, the guest's MQTT port 8883 forwarded to
# 127.0.0.1:PORT, and, when TPMSTATE is given, a swtpm with that state
# directory as the guest's TPM (x86_64: tpm-tis). The serial console is
# this terminal. QEMU and swtpm stop together.
set -euo pipefail
arch=${1:?usage: qemu.sh amd64|arm64 IMAGE KERNEL DISK PORT [TPMSTATE]}
image=${2:?}
kernel=${3:?}
disk=${4:?}
port=${5:?}
tpmstate=${6:-}

accel=(-accel tcg)
if [ "${GGCORE_KVM:-0}" = 1 ] && [ -w /dev/kvm ]; then accel=(-accel kvm); fi
net=(-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:8883")
# The serial console on stdio with signals on: Ctrl-C stops QEMU.
common=(-m 512 -smp 2 -display none -serial stdio -monitor none -no-reboot -kernel "$kernel" -initrd "$image" "${net[@]}")
drive=()
if [ "$disk" != none ]; then
  drive=(-drive "file=$disk,if=none,id=data,format=raw" -device virtio-blk-pci,drive=data)
fi
case "$arch" in
  amd64)
    cmd=(qemu-system-x86_64 -machine q35 "${accel[@]}" "${common[@]}"
      "${drive[@]}" -device virtio-net-pci,netdev=n0 -device virtio-rng-pci
      -append "console=ttyS0 panic=-1 quiet")
    ;;
  arm64)
    cmd=(qemu-system-aarch64 -machine virt -cpu cortex-a57 "${accel[@]}" "${common[@]}"
      "${drive[@]}" -device virtio-net-pci,netdev=n0 -device virtio-rng-pci
      -append "console=ttyAMA0 panic=-1 quiet")
    ;;
  *) echo "qemu: unknown arch $arch" >&2; exit 2 ;;
esac

swtpm_pid=
cleanup() { [ -n "$swtpm_pid" ] && kill "$swtpm_pid" 2>/dev/null || true; }
trap cleanup EXIT
if [ -n "$tpmstate" ]; then
  if [ "$arch" != amd64 ]; then
    echo "qemu: Debian's arm64 kernel has no platform TPM driver; boot arm64 with file keys" >&2
    exit 2
  fi
  ctrl="$tpmstate/qemu.ctrl"
  rm -f "$ctrl"
  swtpm socket --tpm2 --tpmstate dir="$tpmstate" --ctrl type=unixio,path="$ctrl" \
    --log file="$tpmstate/swtpm.log",level=1 &
  swtpm_pid=$!
  for _ in $(seq 100); do [ -S "$ctrl" ] && break; sleep 0.05; done
  # GGCORE_TPM_IF=crb attaches the TPM through CRB instead of TIS.
  cmd+=(-chardev "socket,id=chrtpm,path=$ctrl" -tpmdev emulator,id=tpm0,chardev=chrtpm -device "tpm-${GGCORE_TPM_IF:-tis},tpmdev=tpm0")
fi
"${cmd[@]}"
