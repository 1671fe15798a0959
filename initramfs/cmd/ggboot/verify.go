package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ggcore/ggcore/ota/release"
)

// slotVerifier checks a slot's release and copies its parts to dir.
type slotVerifier struct {
	verifier *release.Verifier
	want     release.Compatible
	floor    uint32              // lowest security version allowed (the TPM counter)
	device   func(string) string // slot name → block device
	dir      string              // where verified parts go (a tmpfs)
	say      func(format string, args ...any)
}

// verify reads the release in slot s: header and signature, compatibility
// and security version, then every part, hashed while it is copied under
// dir/s. The copies are usable only when verify returns nil.
func (v *slotVerifier) verify(s string) (*image, error) {
	dev := v.device(s)
	f, err := os.Open(dev)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dev, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	start := time.Now()
	h, err := release.ReadHeader(r, v.verifier)
	if err != nil {
		return nil, err
	}
	sig := time.Since(start)
	if err := h.Check(v.want, v.floor); err != nil {
		return nil, err
	}
	out := filepath.Join(v.dir, s)
	if err := os.MkdirAll(out, 0o700); err != nil {
		return nil, err
	}
	img := &image{Version: h.Manifest.Version, SecurityVersion: h.Manifest.SecurityVersion, Digest: h.Digest()}
	parts := h.Parts(r)
	for {
		p, pr, err := parts.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		path := filepath.Join(out, p.Name)
		if err := copyPart(path, pr); err != nil {
			return nil, fmt.Errorf("part %s: %w", p.Name, err)
		}
		switch p.Name {
		case release.PartKernel:
			img.Kernel = path
		case release.PartInitramfs:
			img.Initrd = path
		}
	}
	if img.Kernel == "" || img.Initrd == "" {
		return nil, fmt.Errorf("%w: no kernel or no initramfs part", release.ErrMalformed)
	}
	v.say("slot %s verified: signature %v, all parts %v (%d KiB)", s, sig.Round(time.Microsecond),
		time.Since(start).Round(time.Millisecond), h.PayloadSize()/1024)
	return img, nil
}

func copyPart(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
