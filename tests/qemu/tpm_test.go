package qemu

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestArm64TPMImage is TestTPMImage on arm64 (QEMU virt): ggcore's
// kernel drives swtpm attached as tpm-tis-device (TIS over MMIO).
func TestArm64TPMImage(t *testing.T) { testTPMImage(t, "arm64") }

// testTPMImage boots the tpm image for arch with the core's keys inside
// swtpm: a device connects over mutual TLS through hostfwd, a routed
// message arrives and an unrouted one does not, and no plaintext key is
// on the disk. After a power cut it boots again on the same disk and TPM
// state, with the same identity, and serves again.
func testTPMImage(t *testing.T, arch string) {
	initrd, kernel := image(t, "tpm", arch)
	b := provision(t, "tpm")
	disk := b.disk(t, nil)
	assertNoPlaintextKeys(t, disk)
	certBefore := sha256File(t, filepath.Join(b.dir, "certs", "core.cert.pem"))

	for _, round := range []string{"first boot", "after a power cut"} {
		v := boot(t, arch, initrd, kernel, disk, b.tpm.Dir)
		ready := v.waitFor(t, "ggcore ready", bootTimeout)
		t.Logf("%s %s: QEMU start to ggcore ready: %v", arch, round, ready.Round(time.Millisecond))
		for _, p := range []string{"IoTCertificate", "MQTTServerCertificate", "SecretsManager"} {
			if !strings.Contains(v.console.String(), "principal="+p+" store=tpm") {
				t.Errorf("%s: the console does not show the %s key opened in the TPM:\n%s", round, p, v.console)
			}
		}
		assertRouting(t, b, v)
		t.Logf("%s %s: QEMU start to a routed message: %v", arch, round, time.Since(v.started).Round(time.Millisecond))
		v.stop()
	}
	if sha256File(t, filepath.Join(b.dir, "certs", "core.cert.pem")) != certBefore {
		t.Error("the core's certificate changed across the reboot")
	}
}
