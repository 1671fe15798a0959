package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestInitramfsAndDisk(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	pub := filepath.Join(dir, "release.pub.pem")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	init := filepath.Join(dir, "ggboot")
	os.WriteFile(init, []byte("\x7fELF not really"), 0o755)
	out := filepath.Join(dir, "ggboot.cpio")
	if err := run([]string{"initramfs", "--out", out, "--init", init, "--key", pub, "--arch", "arm64", "--board", "qemu-virt", "--flavor", "tpm"}); err != nil {
		t.Fatal(err)
	}
	cpio, _ := os.ReadFile(out)
	for _, want := range []string{"init\x00", "dev/console\x00", "etc/ggcore/release-keys/release.pub.pem\x00",
		`{"arch":"arm64","board":"qemu-virt","flavor":"tpm"}`} {
		if !bytes.Contains(cpio, []byte(want)) {
			t.Errorf("the initramfs lacks %q", want)
		}
	}
	// A file that is not a public key is refused.
	if err := run([]string{"initramfs", "--out", out, "--init", init, "--key", init, "--arch", "arm64", "--board", "qemu-virt", "--flavor", "tpm"}); err == nil {
		t.Error("a key file without a public key was accepted")
	}

	rel := filepath.Join(dir, "a.rel")
	os.WriteFile(rel, bytes.Repeat([]byte{1}, 9<<20), 0o644)
	disk := filepath.Join(dir, "system.img")
	if err := run([]string{"disk", "--out", disk, "--slot-a", rel}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(disk); st == nil || st.Size() != 2<<20+2*18<<20 {
		t.Fatalf("disk size: %v, want 2 MiB + two 18 MiB slots", st)
	}
	if err := run([]string{"disk", "--out", disk}); err == nil {
		t.Error("a disk without slot A was made")
	}
}
