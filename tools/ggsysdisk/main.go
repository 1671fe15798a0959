// Command ggsysdisk builds what a ggcore gateway boots from besides its data
// disk: the first stage's initramfs (ggboot as /init, the trusted release
// keys, the gateway's compatible triple) and the system disk (MBR: slot
// state, slot A, slot B, with releases written into the slots).
//
//	ggsysdisk initramfs --out F --init GGBOOT --key PUB.pem [--key ...] --arch A --board B --flavor F
//	ggsysdisk disk --out F --slot-a RELEASE [--slot-b RELEASE] [--slot-size BYTES]
//
// initramfs/system-disk.sh runs both.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ggcore/ggcore/internal/sysdisk"
	"github.com/ggcore/ggcore/ota/release"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ggsysdisk:", err)
		os.Exit(1)
	}
}

type multi []string

func (m *multi) String() string     { return fmt.Sprint(*m) }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: ggsysdisk initramfs|disk [options] (-h for each)")
	}
	switch args[0] {
	case "initramfs":
		return initramfs(args[1:])
	case "disk":
		return disk(args[1:])
	}
	return fmt.Errorf("unknown command %q (want initramfs or disk)", args[0])
}

func initramfs(args []string) error {
	fs := flag.NewFlagSet("initramfs", flag.ContinueOnError)
	out := fs.String("out", "", "the initramfs to write (uncompressed cpio)")
	init := fs.String("init", "", "the ggboot binary (static)")
	var keys multi
	fs.Var(&keys, "key", "a trusted release public key (PEM); repeatable")
	var c release.Compatible
	fs.StringVar(&c.Arch, "arch", "", "this gateway's arch: amd64 or arm64")
	fs.StringVar(&c.Board, "board", "", "this gateway's board: qemu-q35, qemu-virt, rpi4, ...")
	fs.StringVar(&c.Flavor, "flavor", "", "the image flavor it boots: tpm, pkcs11 or debug")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *init == "" || len(keys) == 0 || c.Arch == "" || c.Board == "" || c.Flavor == "" {
		return errors.New("initramfs: --out, --init, --key, --arch, --board and --flavor are required")
	}
	bin, err := os.ReadFile(*init)
	if err != nil {
		return err
	}
	compat, _ := json.Marshal(c)
	files := []sysdisk.File{sysdisk.Console, {Path: "init", Mode: 0o755, Data: bin},
		{Path: "etc/ggboot/compatible.json", Mode: 0o644, Data: append(compat, '\n')}}
	for _, k := range keys {
		data, err := os.ReadFile(k)
		if err != nil {
			return err
		}
		if _, err := release.ParsePublicKeys(data); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		files = append(files, sysdisk.File{Path: "etc/ggcore/release-keys/" + filepath.Base(k), Mode: 0o644, Data: data})
	}
	var buf bytes.Buffer
	if err := sysdisk.WriteCPIO(&buf, files); err != nil {
		return err
	}
	return os.WriteFile(*out, buf.Bytes(), 0o644)
}

func disk(args []string) error {
	fs := flag.NewFlagSet("disk", flag.ContinueOnError)
	out := fs.String("out", "", "the system disk image to write")
	a := fs.String("slot-a", "", "the release for slot A")
	b := fs.String("slot-b", "", "the release for slot B (default: empty)")
	size := fs.Int64("slot-size", 0, "bytes per slot (default: twice the largest release, at least 16 MiB)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *a == "" {
		return errors.New("disk: --out and --slot-a are required")
	}
	slots := map[string]string{"A": *a}
	if *b != "" {
		slots["B"] = *b
	}
	l := sysdisk.Layout{SlotSize: *size}
	if l.SlotSize == 0 {
		var largest int64
		for _, rel := range slots {
			st, err := os.Stat(rel)
			if err != nil {
				return err
			}
			largest = max(largest, st.Size())
		}
		l.SlotSize = sysdisk.SlotSizeFor(largest)
	}
	if err := sysdisk.Create(*out, l, slots); err != nil {
		return err
	}
	fmt.Printf("%s: %d MiB, slots of %d MiB\n", *out, l.Size()>>20, l.SlotSize>>20)
	return nil
}
