# U-Boot loads ggcore's first stage (mkimage -T script makes boot.scr):
# the kernel (Image) and ggboot's initramfs (initramfs.cpio.xz) from the
# boot partition (partition 1). ggboot, not U-Boot, chooses the A/B slot:
# it reads the slot state, verifies the slot's signed release, measures it
# into PCR 13, arms the watchdog and kexecs it (docs/design.md, "Boot and
# A/B slots"). U-Boot writes nothing.
# ggboot.env on the boot partition holds, as text:
#   GGCORE_DISK=...    the data partition, for gginit (ggcore.disk=)
#   GGCORE_SYSTEM=...  the system disk, for ggboot and ggcore (ggcore.system=):
#                      partition 2 slot A, 3 slot B
#   GGCORE_STATE=...   where the slot state is (ggcore.state=DEVICE@OFFSET)
#   GGCORE_CONSOLE=... the kernel's console

setenv GGCORE_DISK /dev/mmcblk0p4
setenv GGCORE_SYSTEM /dev/mmcblk0
setenv GGCORE_STATE /dev/mmcblk0@1048576
setenv GGCORE_CONSOLE ttyAMA0,115200
if fatload ${devtype} ${devnum}:1 ${scriptaddr} ggboot.env; then
	env import -t ${scriptaddr} ${filesize}
fi

if test -n "${fdt_addr}"; then setenv ggfdt ${fdt_addr}; else setenv ggfdt ${fdtcontroladdr}; fi
setenv bootargs "console=${GGCORE_CONSOLE} panic=5 ggcore.disk=${GGCORE_DISK} ggcore.system=${GGCORE_SYSTEM} ggcore.state=${GGCORE_STATE}"
echo "ggboot: loading the first stage"
fatload ${devtype} ${devnum}:1 ${kernel_addr_r} Image
fatload ${devtype} ${devnum}:1 ${ramdisk_addr_r} initramfs.cpio.xz
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${ggfdt}
echo "ggboot: the first stage did not boot"
reset
