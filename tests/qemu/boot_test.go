package qemu

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTPMImage boots the tpm image (x86_64) with the core's keys inside
// swtpm (see testTPMImage).
func TestTPMImage(t *testing.T) { testTPMImage(t, "amd64") }

// TestBootRefusals: a missing data disk, a missing TPM and a bad config
// each stop the boot with a clear console message, not a silent crash
// loop.
func TestBootRefusals(t *testing.T) {
	initrd, kernel := image(t, "tpm", "amd64")
	t.Run("no data disk", func(t *testing.T) {
		v := boot(t, "amd64", initrd, kernel, "none", "")
		v.waitFor(t, "STOPPED: no data partition", bootTimeout)
	})
	t.Run("no TPM", func(t *testing.T) {
		b := provision(t, "tpm")
		v := boot(t, "amd64", initrd, kernel, b.disk(t, nil), "") // no swtpm attached
		v.waitFor(t, "refused to start", bootTimeout)
		if c := v.console.String(); !strings.Contains(c, "TPM unreachable") || !strings.Contains(c, "/dev/tpmrm0") {
			t.Errorf("the console does not say the TPM /dev/tpmrm0 is unreachable:\n%s", c)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		b := provision(t, "file")
		disk := b.disk(t, func(cfg map[string]any) {
			cfg["coreThing"].(map[string]any)["ggMqttPort"] = 70000
		})
		v := boot(t, "amd64", initrd, kernel, disk, "")
		v.waitFor(t, "refused to start", bootTimeout)
		if c := v.console.String(); !strings.Contains(c, "coreThing.ggMqttPort") {
			t.Errorf("the console does not name coreThing.ggMqttPort:\n%s", c)
		}
	})
}

// TestArm64Image boots the tpm-flavor arm64 build with file keys (no TPM
// attached; TestArm64TPMImage has the keys in one) to ggcore ready and a
// routed message.
func TestArm64Image(t *testing.T) {
	initrd, kernel := image(t, "tpm", "arm64")
	b := provision(t, "file")
	v := boot(t, "arm64", initrd, kernel, b.disk(t, nil), "")
	ready := v.waitFor(t, "ggcore ready", bootTimeout)
	t.Logf("arm64: QEMU start to ggcore ready: %v", ready.Round(time.Millisecond))
	assertRouting(t, b, v)
}

// TestPKCS11Image boots the pkcs11 image with a SoftHSM2 token on its data
// disk holding the core's keys, and repeats the connection test.
func TestPKCS11Image(t *testing.T) {
	b := provision(t, "pkcs11")
	initrd, kernel := image(t, "pkcs11", "amd64")
	disk := b.disk(t, nil)
	v := boot(t, "amd64", initrd, kernel, disk, "")
	v.waitFor(t, "ggcore ready", bootTimeout)
	if !strings.Contains(v.console.String(), "principal=IoTCertificate store=pkcs11") {
		t.Errorf("the console does not show the identity key opened in the token:\n%s", v.console)
	}
	assertRouting(t, b, v)
}

// TestImageReproducible builds the tpm image twice and compares the bytes,
// and checks its manifest.
func TestImageReproducible(t *testing.T) {
	first, _ := image(t, "tpm", "amd64")
	other := t.TempDir()
	os.Symlink(filepath.Join(e.build, "kernel"), filepath.Join(other, "kernel"))
	if err := buildImage(other, "tpm", "amd64"); err != nil {
		t.Fatal(err)
	}
	second := initrdPath(t, other, "tpm", "amd64")
	if filepath.Base(first) != filepath.Base(second) {
		t.Fatalf("two builds of one commit name their images differently: %s vs %s", first, second)
	}
	if a, b := sha256File(t, first), sha256File(t, second); a != b {
		t.Errorf("two builds of one commit differ: %s vs %s", a, b)
	}
	data, err := os.ReadFile(filepath.Join(other, "images", "ggcore-tpm-amd64.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Flavor           string `json:"flavor"`
		Arch             string `json:"arch"`
		Commit           string `json:"commit"`
		SHA256           string `json:"sha256"`
		Size             int64  `json:"size"`
		UncompressedSize int64  `json:"uncompressed_size"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest: %v\n%s", err, data)
	}
	if m.Flavor != "tpm" || m.Arch != "amd64" || m.Commit == "" || m.SHA256 != sha256File(t, second) {
		t.Errorf("manifest %+v does not describe the image", m)
	}
	info, _ := os.Stat(second)
	t.Logf("tpm/amd64 image: %d KiB compressed, %d KiB uncompressed", info.Size()/1024, m.UncompressedSize/1024)
}

// initrdPath returns the initramfs that initramfs/build.sh wrote into
// BUILD/images for FLAVOR/ARCH, as its manifest names it (the suffix
// says the compression: .cpio.lz4 unless GGCORE_INITRD_COMPRESSION says
// otherwise).
func initrdPath(t testing.TB, build, flavor, arch string) string {
	t.Helper()
	name := "ggcore-" + flavor + "-" + arch
	data, err := os.ReadFile(filepath.Join(build, "images", name+".json"))
	if err != nil {
		t.Fatalf("image manifest: %v", err)
	}
	var m struct {
		Image string `json:"image"`
	}
	if err := json.Unmarshal(data, &m); err != nil || !strings.HasPrefix(m.Image, name+".cpio.") {
		t.Fatalf("image manifest %s.json does not name the initramfs (%v):\n%s", name, err, data)
	}
	return filepath.Join(build, "images", m.Image)
}
