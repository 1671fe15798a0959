package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ggcore/ggcore/ota/release"
)

var qemuAmd64 = release.Compatible{Arch: "amd64", Board: "qemu-q35", Flavor: "tpm"}

// writeRelease builds a signed release into a file standing in for a slot.
func writeRelease(t *testing.T, key *ecdsa.PrivateKey, c release.Compatible, sv uint32, kernel, initrd []byte) string {
	t.Helper()
	var buf bytes.Buffer
	m := release.Manifest{Compatible: c, Version: "1.0.0", SecurityVersion: sv}
	if err := release.Build(&buf, m, map[string]io.Reader{release.PartKernel: bytes.NewReader(kernel), release.PartInitramfs: bytes.NewReader(initrd)}, key); err != nil {
		t.Fatal(err)
	}
	// A slot is larger than its release: zeros follow.
	buf.Write(make([]byte, 4096))
	p := filepath.Join(t.TempDir(), "slot.img")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerify(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v, err := release.NewVerifier(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	kernel, initrd := bytes.Repeat([]byte("k"), 100000), bytes.Repeat([]byte("i"), 50000)
	good := writeRelease(t, key, qemuAmd64, 2, kernel, initrd)
	tampered := filepath.Join(t.TempDir(), "tampered.img")
	data, _ := os.ReadFile(good)
	data[len(data)-4096-10] ^= 1 // a byte of the initramfs
	os.WriteFile(tampered, data, 0o600)
	tests := []struct {
		name  string
		slot  string
		floor uint32
		want  error
	}{
		{"good", good, 0, nil},
		{"at the floor", good, 2, nil},
		{"below the floor", good, 3, release.ErrDowngrade},
		{"foreign key", writeRelease(t, other, qemuAmd64, 2, kernel, initrd), 0, release.ErrUnknownKey},
		{"foreign board", writeRelease(t, key, release.Compatible{Arch: "amd64", Board: "rpi4", Flavor: "tpm"}, 2, kernel, initrd), 0, release.ErrIncompatible},
		{"tampered part", tampered, 0, release.ErrHashMismatch},
		{"empty slot", filepath.Join(t.TempDir(), "empty"), 0, release.ErrMalformed},
	}
	os.WriteFile(tests[len(tests)-1].slot, make([]byte, 8192), 0o600)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sv := &slotVerifier{verifier: v, want: qemuAmd64, floor: tt.floor, dir: dir,
				device: func(string) string { return tt.slot }, say: t.Logf}
			img, err := sv.verify("B")
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("verify: %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k, _ := os.ReadFile(img.Kernel); !bytes.Equal(k, kernel) {
				t.Error("the kernel copy differs")
			}
			if i, _ := os.ReadFile(img.Initrd); !bytes.Equal(i, initrd) {
				t.Error("the initramfs copy differs")
			}
			if img.SecurityVersion != 2 || img.Version != "1.0.0" || img.Digest == ([32]byte{}) {
				t.Errorf("image = %+v", img)
			}
		})
	}
}
