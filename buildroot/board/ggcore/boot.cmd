# ggcore's A/B slot choice for U-Boot (mkimage -T script makes boot.scr).
# ggboot.env on the boot partition (partition 1) holds, as text:
#   BOOT_ORDER="A B"   the slots in the order to try them
#   BOOT_A_LEFT=3      tries left for each slot; a boot spends one
#   BOOT_B_LEFT=3
#   GGCORE_DISK=...    the data partition, for gginit (ggcore.disk=)
#   GGCORE_CONSOLE=... the kernel's console
# The first slot in BOOT_ORDER with tries left boots, after its counter
# went down by one and the file was written back. The running system
# sets the counter back when ggcore is healthy (mark good); a slot that
# never gets that far runs out of tries and the other one boots.

setenv BOOT_ORDER "A B"
setenv BOOT_A_LEFT 3
setenv BOOT_B_LEFT 3
setenv GGCORE_DISK /dev/mmcblk0p4
setenv GGCORE_CONSOLE ttyAMA0,115200
if fatload ${devtype} ${devnum}:1 ${scriptaddr} ggboot.env; then
	env import -t ${scriptaddr} ${filesize}
fi

setenv slot
for s in ${BOOT_ORDER}; do
	if test -z "${slot}" && test "${s}" = A && test ${BOOT_A_LEFT} -gt 0; then
		setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
		setenv slot A
		setenv slotpart 2
	fi
	if test -z "${slot}" && test "${s}" = B && test ${BOOT_B_LEFT} -gt 0; then
		setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
		setenv slot B
		setenv slotpart 3
	fi
done
if test -z "${slot}"; then
	echo "ggboot: no slot has tries left; stopping (reflash, or reset a counter in ggboot.env)"
	exit
fi

env export -t ${scriptaddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT GGCORE_DISK GGCORE_CONSOLE
fatwrite ${devtype} ${devnum}:1 ${scriptaddr} ggboot.env ${filesize}
echo "ggboot: slot ${slot} (tries left: A ${BOOT_A_LEFT}, B ${BOOT_B_LEFT})"

if test -n "${fdt_addr}"; then setenv ggfdt ${fdt_addr}; else setenv ggfdt ${fdtcontroladdr}; fi
setenv bootargs "console=${GGCORE_CONSOLE} panic=5 ggcore.slot=${slot} ggcore.disk=${GGCORE_DISK}"
fatload ${devtype} ${devnum}:${slotpart} ${kernel_addr_r} Image
fatload ${devtype} ${devnum}:${slotpart} ${ramdisk_addr_r} initramfs.cpio.xz
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${ggfdt}
echo "ggboot: slot ${slot} did not boot"
reset
