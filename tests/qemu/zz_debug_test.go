package qemu

import (
	"os"
	"testing"
)

func TestZZDebugConsole(t *testing.T) {
	arch := os.Getenv("DBG_ARCH")
	if arch == "" {
		t.Skip()
	}
	initrd, kernel := image(t, "tpm", arch)
	b := provision(t, "tpm")
	disk := b.disk(t, nil)
	v := boot(t, arch, initrd, kernel, disk, b.tpm.Dir)
	d := v.firstConnection(t, b)
	v.waitFor(t, "ggcore resident memory", bootTimeout)
	t.Logf("first connection %v\n%s", d, v.console)
}
