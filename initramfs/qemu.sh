#!/usr/bin/env bash
# qemu.sh ARCH IMAGE KERNEL DISK|none PORT [TPMSTATE]: boots a ggcore image under
# QEMU (TCG; KVM only when GGCORE_KVM=1 and /dev/kvm works), with the data
# disk as a virtio disk, the guest's MQTT port 8883 forwarded to
# 127.0.0.1:PORT, and, when TPMSTATE is given, a swtpm with that state
# directory as the guest's TPM (x86_64: tpm-tis, or tpm-crb with
# GGCORE_TPM_IF=crb; arm64 virt: tpm-tis-device, TIS over MMIO, which
# ggcore's kernel drives and Debian's does not). x86_64 boots the kernel
# directly through SeaBIOS (its fw_cfg DMA load costs ~0.4 s);
# GGCORE_BIOS=qboot uses qboot, which saves ~0.05 s more but, in QEMU
# 7.2, places the initramfs outside RAM as soon as a TPM is attached (the
# kernel then finds no root file system), so it is for boots without a
# TPM only. The serial console is this terminal. QEMU and swtpm stop
# together.
set -euo pipefail
arch=${1:?usage: qemu.sh amd64|arm64 IMAGE KERNEL DISK PORT [TPMSTATE]}
image=${2:?}
kernel=${3:?}
disk=${4:?}
port=${5:?}
tpmstate=${6:-}

# GGCORE_QEMU_APPEND adds words to the kernel command line (such as
# ggcore.ip=10.0.2.15/24); GGCORE_QEMU_ARGS adds QEMU options (such as
# -rtc base=1970-01-01).
append="${GGCORE_QEMU_APPEND:+ $GGCORE_QEMU_APPEND}"
read -ra extra <<<"${GGCORE_QEMU_ARGS:-}"
accel=(-accel tcg)
if [ "${GGCORE_KVM:-0}" = 1 ] && [ -w /dev/kvm ]; then accel=(-accel kvm); fi
net=(-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:8883")
# The serial console on stdio with signals on: Ctrl-C stops QEMU.
# GGCORE_QEMU_REBOOT=1: a guest reboot (or watchdog reset, or panic) boots
# again instead of ending QEMU; for the A/B first stage (ggboot).
noreboot=(-no-reboot)
[ "${GGCORE_QEMU_REBOOT:-0}" = 1 ] && noreboot=()
common=(-m 512 -smp 2 -display none -serial stdio -monitor none "${noreboot[@]}" -kernel "$kernel" -initrd "$image" "${net[@]}")
drive=()
if [ "$disk" != none ]; then
  drive=(-drive "file=$disk,if=none,id=data,format=raw" -device virtio-blk-pci,drive=data)
fi
# GGCORE_SYSTEM_DISK=PATH: the A/B system disk (initramfs/system-disk.sh)
# as the next virtio disk, named on the command line (ggcore.system=), and
# the i6300esb watchdog the first stage arms.
if [ -n "${GGCORE_SYSTEM_DISK:-}" ]; then
  drive+=(-drive "file=$GGCORE_SYSTEM_DISK,if=none,id=system,format=raw" -device virtio-blk-pci,drive=system
    -device i6300esb -watchdog-action reset)
  append+=" ggcore.system=/dev/$([ "$disk" != none ] && echo vdb || echo vda)"
fi
case "$arch" in
  amd64)
    # qboot: no boot menu, no option ROM scan, straight to the kernel
    # (not with a TPM: see above).
    bios=()
    if [ "${GGCORE_BIOS:-seabios}" = qboot ] && [ -f /usr/share/qemu/qboot.rom ]; then
      bios=(-bios /usr/share/qemu/qboot.rom)
    fi
    # -nodefaults: no VGA (SeaBIOS skips its video BIOS, the kernel its
    # VGA console); romfile=: no iPXE option ROM for SeaBIOS to run. lpj:
    # the secondary CPU's delay-loop calibration, which fails under TCG
    # after ~0.15 s, is skipped (x86 delays use the TSC, not the loop).
    cmd=(qemu-system-x86_64 -machine q35 -nodefaults "${bios[@]}" "${accel[@]}" "${common[@]}"
      "${drive[@]}" -device virtio-net-pci,netdev=n0,romfile= -device virtio-rng-pci
      -append "console=ttyS0 panic=-1 quiet lpj=10000000$append")
    ;;
  arm64)
    cmd=(qemu-system-aarch64 -machine virt -cpu cortex-a57 "${accel[@]}" "${common[@]}"
      "${drive[@]}" -device virtio-net-pci,netdev=n0 -device virtio-rng-pci
      -append "console=ttyAMA0 panic=-1 quiet$append")
    ;;
  *) echo "qemu: unknown arch $arch" >&2; exit 2 ;;
esac

cmd+=("${extra[@]}")

# QEMU and swtpm die with this script, even when it is killed with
# SIGKILL (a test that timed out, a closed terminal), rather than keep an
# orphaned guest running.
orphan=()
if command -v setpriv >/dev/null 2>&1; then orphan=(setpriv --pdeathsig KILL); fi

swtpm_pid=
cleanup() { [ -n "$swtpm_pid" ] && kill "$swtpm_pid" 2>/dev/null || true; }
trap cleanup EXIT
if [ -n "$tpmstate" ]; then
  ctrl="$tpmstate/qemu.ctrl"
  rm -f "$ctrl"
  "${orphan[@]}" swtpm socket --tpm2 --tpmstate dir="$tpmstate" --ctrl type=unixio,path="$ctrl" \
    --log file="$tpmstate/swtpm.log",level=1 &
  swtpm_pid=$!
  for _ in $(seq 500); do [ -S "$ctrl" ] && break; sleep 0.01; done
  # GGCORE_TPM_IF=crb attaches the TPM through CRB instead of TIS.
  dev="tpm-${GGCORE_TPM_IF:-tis}"
  [ "$arch" = arm64 ] && dev=tpm-tis-device
  cmd+=(-chardev "socket,id=chrtpm,path=$ctrl" -tpmdev emulator,id=tpm0,chardev=chrtpm -device "$dev,tpmdev=tpm0")
fi
"${orphan[@]}" "${cmd[@]}"
