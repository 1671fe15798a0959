// Package buildroot holds no Go code: it is ggcore's Buildroot external
// tree (BR2_EXTERNAL), and this file lints it. Buildroot itself cannot be
// fetched on the machines that run `make test`, so the tests check what
// can be checked without it: the tree's layout, Buildroot's naming rules,
// that every path a defconfig names exists, and that the kernel fragments
// are the ones `make kernel` builds. With BUILDROOT_SRC set to a Buildroot
// source tree, TestDefconfigsLoad also loads each defconfig with it.
package buildroot

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// externalName is the tree's name in external.desc: BR2_EXTERNAL_GGCORE_PATH.
const externalName = "GGCORE"

// defconfigs are the boards the tree supports.
var defconfigs = []string{"ggcore_qemu_aarch64_virt_defconfig", "ggcore_raspberrypi4_64_defconfig"}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestLayout: the files a BR2_EXTERNAL tree must have, and those the
// defconfigs and README rely on.
func TestLayout(t *testing.T) {
	for _, f := range []string{
		"external.desc", "Config.in", "external.mk",
		"package/ggcore/Config.in", "package/ggcore/ggcore.mk",
		"configs/ggcore_qemu_aarch64_virt_defconfig", "configs/ggcore_raspberrypi4_64_defconfig",
		"board/ggcore/linux-amd64.fragment", "board/ggcore/linux-arm64.fragment", "board/ggcore/linux-rpi4.fragment",
		"board/ggcore/genimage.cfg", "board/ggcore/post-image.sh", "board/ggcore/boot.cmd",
		"board/ggcore/uboot.fragment", "board/ggcore/rpi4/config.txt",
		"board/ggcore/patches/linux/0001-kconfig-allno_defconfig.patch",
	} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	if info, err := os.Stat("board/ggcore/post-image.sh"); err == nil && info.Mode()&0o111 == 0 {
		t.Error("board/ggcore/post-image.sh is not executable (Buildroot runs it directly)")
	}
	if out, err := exec.Command("bash", "-n", "board/ggcore/post-image.sh").CombinedOutput(); err != nil {
		t.Errorf("post-image.sh: %v\n%s", err, out)
	}
}

// TestExternalDesc: the name is what every path in the tree uses.
func TestExternalDesc(t *testing.T) {
	desc := read(t, "external.desc")
	m := regexp.MustCompile(`(?m)^name: ([A-Za-z0-9_]+)$`).FindStringSubmatch(desc)
	if m == nil || m[1] != externalName {
		t.Fatalf("external.desc: want `name: %s`, got:\n%s", externalName, desc)
	}
	if !regexp.MustCompile(`(?m)^desc: .+$`).MatchString(desc) {
		t.Error("external.desc has no desc: line")
	}
	if !strings.Contains(read(t, "external.mk"), "$(BR2_EXTERNAL_"+externalName+"_PATH)/package/") {
		t.Error("external.mk does not include the packages under $(BR2_EXTERNAL_GGCORE_PATH)/package")
	}
}

// TestPackages: every package directory is sourced from Config.in, its
// Kconfig symbols are BR2_PACKAGE_<NAME>[_...], every variable its .mk
// sets is <NAME>_..., and it ends with one $(eval $(...-package)).
func TestPackages(t *testing.T) {
	dirs, err := os.ReadDir("package")
	if err != nil {
		t.Fatal(err)
	}
	top := read(t, "Config.in")
	assign := regexp.MustCompile(`^([A-Za-z0-9_]+)\s*(?:\+=|\?=|:=|=)`)
	for _, d := range dirs {
		pkg := d.Name()
		upper := strings.ToUpper(strings.ReplaceAll(pkg, "-", "_"))
		t.Run(pkg, func(t *testing.T) {
			if !strings.Contains(top, `source "$BR2_EXTERNAL_`+externalName+`_PATH/package/`+pkg+`/Config.in"`) {
				t.Errorf("Config.in does not source package/%s/Config.in", pkg)
			}
			for _, sym := range regexp.MustCompile(`(?m)^config (\S+)`).FindAllStringSubmatch(read(t, filepath.Join("package", pkg, "Config.in")), -1) {
				if sym[1] != "BR2_PACKAGE_"+upper && !strings.HasPrefix(sym[1], "BR2_PACKAGE_"+upper+"_") {
					t.Errorf("Config.in symbol %s is not BR2_PACKAGE_%s[_...]", sym[1], upper)
				}
			}
			mk := read(t, filepath.Join("package", pkg, pkg+".mk"))
			inDefine := false
			for _, line := range strings.Split(mk, "\n") {
				switch {
				case strings.HasPrefix(line, "define "):
					inDefine = true
					if name := strings.TrimPrefix(line, "define "); !strings.HasPrefix(name, upper+"_") {
						t.Errorf("%s.mk: define %s is not %s_...", pkg, name, upper)
					}
				case line == "endef":
					inDefine = false
				case !inDefine:
					if m := assign.FindStringSubmatch(line); m != nil && !strings.HasPrefix(m[1], upper+"_") {
						t.Errorf("%s.mk sets %s: a package's variables start with %s_", pkg, m[1], upper)
					}
				}
			}
			if last := strings.TrimSpace(mk[strings.LastIndex(strings.TrimSpace(mk), "\n")+1:]); !regexp.MustCompile(`^\$\(eval \$\((host-)?[a-z]+-package\)\)$`).MatchString(last) {
				t.Errorf("%s.mk ends with %q, not $(eval $(...-package))", pkg, last)
			}
		})
	}
	if mk := read(t, "package/ggcore/ggcore.mk"); !strings.Contains(mk, "$(eval $(golang-package))") {
		t.Error("ggcore.mk does not use Buildroot's golang-package infrastructure")
	}
}

// defconfig reads a defconfig as symbol -> value ("n" for `is not set`).
func defconfig(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("configs", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := regexp.MustCompile(`^(BR2_[A-Za-z0-9_]+)=(.*)$`)
	unset := regexp.MustCompile(`^# (BR2_[A-Za-z0-9_]+) is not set$`)
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case set.MatchString(line):
			s := set.FindStringSubmatch(line)
			if _, dup := m[s[1]]; dup {
				t.Errorf("%s sets %s twice", name, s[1])
			}
			m[s[1]] = s[2]
		case unset.MatchString(line):
			m[unset.FindStringSubmatch(line)[1]] = "n"
		case line == "" || strings.HasPrefix(line, "# "):
		default:
			t.Errorf("%s: not a defconfig line: %q", name, line)
		}
	}
	return m
}

// TestDefconfigs: every file a defconfig names in this tree exists, and
// each builds ggcore, a kernel with the arm64 fragment, and the A/B image.
func TestDefconfigs(t *testing.T) {
	ref := regexp.MustCompile(`\$\(BR2_EXTERNAL_` + externalName + `_PATH\)/([^" ]+)`)
	for _, name := range defconfigs {
		t.Run(name, func(t *testing.T) {
			cfg := defconfig(t, name)
			for _, line := range strings.Split(read(t, filepath.Join("configs", name)), "\n") {
				for _, m := range ref.FindAllStringSubmatch(line, -1) {
					if _, err := os.Stat(m[1]); err != nil {
						t.Errorf("%s names %s, which the tree does not have", name, m[1])
					}
				}
				if strings.Contains(line, "BR2_EXTERNAL_") && !strings.Contains(line, "BR2_EXTERNAL_"+externalName+"_PATH") {
					t.Errorf("%s: %q names another external tree", name, line)
				}
			}
			for sym, want := range map[string]string{
				"BR2_aarch64": "y", "BR2_PACKAGE_GGCORE": "y", "BR2_LINUX_KERNEL": "y",
				"BR2_INIT_NONE": "y", "BR2_TARGET_ROOTFS_CPIO": "y", "BR2_PACKAGE_HOST_GENIMAGE": "y",
				"BR2_ROOTFS_POST_IMAGE_SCRIPT": `"$(BR2_EXTERNAL_GGCORE_PATH)/board/ggcore/post-image.sh"`,
			} {
				if cfg[sym] != want {
					t.Errorf("%s: %s=%s, want %s", name, sym, cfg[sym], want)
				}
			}
			if !strings.Contains(cfg["BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"], "/board/ggcore/linux-arm64.fragment") {
				t.Errorf("%s does not build the kernel with board/ggcore/linux-arm64.fragment", name)
			}
		})
	}
}

// TestKernelFragments: `make kernel` (initramfs/kernel-build.sh) builds
// from these fragments the way Buildroot does (allnoconfig, through the
// allno_defconfig patch, then the fragment), the QEMU defconfig asks for
// the upstream version of Debian's linux-source, and each fragment holds
// what the issue asks of the image's kernels.
func TestKernelFragments(t *testing.T) {
	script := read(t, "../initramfs/kernel-build.sh")
	for _, want := range []string{"buildroot/board/ggcore/linux-$arch.fragment", "allnoconfig", `merge_config.sh" -m`} {
		if !strings.Contains(script, want) {
			t.Errorf("initramfs/kernel-build.sh does not use %q: the tree and `make kernel` would build different kernels", want)
		}
	}
	qemu := defconfig(t, "ggcore_qemu_aarch64_virt_defconfig")
	if qemu["BR2_LINUX_KERNEL_DEFCONFIG"] != `"allno"` || qemu["BR2_GLOBAL_PATCH_DIR"] != `"$(BR2_EXTERNAL_GGCORE_PATH)/board/ggcore/patches"` {
		t.Errorf("the QEMU defconfig does not start from allnoconfig (BR2_LINUX_KERNEL_DEFCONFIG=%s, BR2_GLOBAL_PATCH_DIR=%s)",
			qemu["BR2_LINUX_KERNEL_DEFCONFIG"], qemu["BR2_GLOBAL_PATCH_DIR"])
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "linux-source-6.1").Output(); err == nil && len(out) > 0 {
		upstream, _, _ := strings.Cut(string(out), "-")
		if got := strings.Trim(qemu["BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE"], `"`); got != upstream {
			t.Errorf("the QEMU defconfig builds Linux %s, `make kernel` Debian's linux-source-6.1 %s", got, out)
		}
	}

	line := regexp.MustCompile(`^(CONFIG_[A-Z0-9_]+=(y|n|-?[0-9]+|0x[0-9a-f]+|"[^"]*")|# CONFIG_[A-Z0-9_]+ is not set|#.*|)$`)
	common := []string{"CONFIG_BLK_DEV_INITRD", "CONFIG_DEVTMPFS", "CONFIG_FUTEX", "CONFIG_EPOLL", "CONFIG_TCG_TPM", "CONFIG_TCG_TIS",
		"CONFIG_VIRTIO_PCI", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_NET", "CONFIG_EXT4_FS", "CONFIG_VFAT_FS", "CONFIG_WATCHDOG",
		"CONFIG_I6300ESB_WDT", "CONFIG_KEXEC", "CONFIG_PACKET", "CONFIG_RTC_CLASS"}
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"linux-amd64.fragment", append(slices.Clone(common), "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_TCG_CRB", "CONFIG_ACPI", "CONFIG_PNPACPI")},
		{"linux-arm64.fragment", append(slices.Clone(common), "CONFIG_SERIAL_AMBA_PL011_CONSOLE", "CONFIG_OF", "CONFIG_TCG_TIS_SPI", "CONFIG_PCI_HOST_GENERIC")},
		{"linux-rpi4.fragment", []string{"CONFIG_SPI_BCM2835", "CONFIG_TCG_TIS_SPI", "CONFIG_BCM2835_WDT", "CONFIG_MMC_BCM2835"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			seen := map[string]string{}
			for i, l := range strings.Split(strings.TrimRight(read(t, filepath.Join("board/ggcore", tc.file)), "\n"), "\n") {
				if !line.MatchString(l) {
					t.Errorf("%s:%d: not a kernel config line: %q", tc.file, i+1, l)
					continue
				}
				if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "CONFIG_") {
					if _, dup := seen[k]; dup {
						t.Errorf("%s sets %s twice", tc.file, k)
					}
					seen[k] = v
				}
			}
			if seen["CONFIG_MODULES"] == "y" {
				t.Errorf("%s enables modules; the image has none", tc.file)
			}
			for _, k := range tc.want {
				if seen[k] != "y" {
					t.Errorf("%s does not build in %s", tc.file, k)
				}
			}
		})
	}
}

// TestGenimage: the A/B layout the OTA design uses: a boot partition,
// two slots (vfat, kernel + initramfs each), the ext4 data partition
// gginit mounts (label greengrass); post-image.sh fills each of them.
func TestGenimage(t *testing.T) {
	cfg := read(t, "board/ggcore/genimage.cfg")
	parts := regexp.MustCompile(`(?m)^\s*partition ([a-z0-9-]+) \{`).FindAllStringSubmatch(cfg, -1)
	var names []string
	for _, p := range parts {
		names = append(names, p[1])
	}
	if want := []string{"boot", "boot-a", "boot-b", "data"}; !slices.Equal(names, want) {
		t.Errorf("genimage.cfg partitions %v, want %v", names, want)
	}
	if !regexp.MustCompile(`(?s)image data\.ext4 \{.*?label = "greengrass"`).MatchString(cfg) {
		t.Error(`genimage.cfg: the data partition is not ext4 labelled "greengrass"`)
	}
	post := read(t, "board/ggcore/post-image.sh")
	for _, m := range regexp.MustCompile(`mountpoint = "/([a-z-]+)"`).FindAllStringSubmatch(cfg, -1) {
		if !strings.Contains(post, `"$stage/root/`+m[1]) {
			t.Errorf("post-image.sh does not fill %s/, which genimage.cfg puts in a partition", m[1])
		}
	}
	boot := read(t, "board/ggcore/boot.cmd")
	for _, want := range []string{"Image", "initramfs.cpio.xz", "ggboot.env", "ggcore.disk="} {
		if !strings.Contains(boot, want) || !strings.Contains(post, want) && want != "ggcore.disk=" {
			t.Errorf("boot.cmd and post-image.sh disagree on %q", want)
		}
	}
}

// TestDefconfigsLoad loads each defconfig with the Buildroot source tree
// in BUILDROOT_SRC (`make BR2_EXTERNAL=... NAME_defconfig`) and checks
// that Buildroot kept every line: an unknown or unmet option is dropped
// without an error. Buildroot is not installable on the CI machines, so
// the test is skipped without BUILDROOT_SRC.
func TestDefconfigsLoad(t *testing.T) {
	src := os.Getenv("BUILDROOT_SRC")
	if src == "" {
		t.Skip("BUILDROOT_SRC is not set (a Buildroot source tree to load the defconfigs with)")
	}
	here, _ := os.Getwd()
	for _, name := range defconfigs {
		t.Run(name, func(t *testing.T) {
			out := t.TempDir()
			cmd := exec.Command("make", "-s", "-C", src, "O="+out, "BR2_EXTERNAL="+here, name)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("make %s: %v\n%s", name, err, b)
			}
			got := read(t, filepath.Join(out, ".config"))
			for sym, want := range defconfig(t, name) {
				if want == "n" {
					if strings.Contains(got, "\n"+sym+"=") {
						t.Errorf("%s: Buildroot set %s, which the defconfig unsets", name, sym)
					}
				} else if !strings.Contains(got, "\n"+sym+"="+want+"\n") {
					t.Errorf("%s: Buildroot dropped %s=%s", name, sym, want)
				}
			}
		})
	}
}
