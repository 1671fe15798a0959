package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/internal/atomicfile"
	"github.com/ggcore/ggcore/internal/cli"
	"github.com/ggcore/ggcore/ota/release"
)

// releaseCommands is the "release" command group: over-the-air image
// releases (docs/design.md "Releases").
func releaseCommands() cli.Command {
	return cli.Command{Name: "release", Subcommands: []cli.Command{
		{Name: "keygen", Args: "--out KEY.pem [--pub PUB.pem] [--type ecdsa|ed25519]",
			Summary: "make a release signing key in a file (mode 0600) and print its key id",
			Run:     runReleaseKeygen},
		{Name: "sign", Args: "--kernel F --initramfs F [--dtb F] --arch A --board B --flavor F --version V --security-version N --key KEY --out RELEASE",
			Summary: "build and sign a release of a kernel, initramfs and optional dtb",
			Help: `KEY is the signing key: a PEM file (ECDSA P-256 or Ed25519, as release keygen
writes), or a key in a PKCS#11 token (ECDSA P-256, e.g. made by ggprov keys create --type ecp256):
  pkcs11:token=LABEL;object=LABEL;type=private?pin-source=file:///path/pin[&module-path=/path/module.so]
The module comes from module-path= or --pkcs11-module.`,
			Run: runReleaseSign},
		{Name: "show", Args: "RELEASE [--pub PUB.pem ...] [--json]",
			Summary: "print a release's manifest; with --pub verify its signature, and always its part hashes",
			Run:     runReleaseShow},
		{Name: "pcr", Args: "RELEASE",
			Summary: "print the PCR 13 value ggboot's measurement of the release gives (SHA-256 bank, from reset)",
			Run:     runReleasePCR},
	}}
}

// runReleaseKeygen runs "ggprov release keygen".
func runReleaseKeygen(_ context.Context, inv *cli.Invocation) error {
	fs := inv.Flags
	out := fs.String("out", "", "the private key file to write (PKCS#8 PEM, mode 0600; an existing file is refused)")
	pubOut := fs.String("pub", "", "also write the public key (PEM) here: what ggboot and the core trust")
	typ := fs.String("type", "ecdsa", "key type: ecdsa (P-256) or ed25519")
	if _, err := inv.Parse("", 0, 0); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	var key crypto.Signer
	var err error
	switch *typ {
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return usagef("--type %q: want ecdsa or ed25519", *typ)
	}
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	id, err := release.KeyID(key.Public())
	if err != nil {
		return err
	}
	pubPEM, err := publicPEM(key.Public())
	if err != nil {
		return err
	}
	if err := writeNewFile(*out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if *pubOut != "" {
		if err := atomicfile.WriteFile(*pubOut, pubPEM, 0o644); err != nil {
			return fmt.Errorf("write public key %s: %w", *pubOut, err)
		}
	}
	fmt.Fprintf(inv.Stdout, "release key %s (%s) written to %s", id, *typ, *out)
	if *pubOut != "" {
		fmt.Fprintf(inv.Stdout, ", public key to %s", *pubOut)
	}
	fmt.Fprintln(inv.Stdout)
	return nil
}

// writeNewFile writes data to a file that must not exist yet, synced.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: refusing to overwrite a key", path)
		}
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func publicPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// runReleaseSign runs "ggprov release sign".
func runReleaseSign(_ context.Context, inv *cli.Invocation) error {
	fs := inv.Flags
	kernel := fs.String("kernel", "", "the kernel image")
	initramfs := fs.String("initramfs", "", "the initramfs")
	dtb := fs.String("dtb", "", "the device tree blob (optional)")
	arch := fs.String("arch", "", "compatible arch: amd64 or arm64")
	board := fs.String("board", "", "compatible board: qemu-virt, qemu-q35, rpi4, ...")
	flavor := fs.String("flavor", "", "compatible flavor: tpm, pkcs11 or debug")
	version := fs.String("version", "", "the version, free text for humans (<= 64 printable characters)")
	secVersion := fs.String("security-version", "", "the security version, 0..65535: no system that committed a higher one accepts this release")
	keyRef := fs.String("key", "", "the signing key: a PEM file or a pkcs11: URI")
	module := fs.String("pkcs11-module", "", "the PKCS#11 module for a pkcs11: --key without module-path=")
	out := fs.String("out", "", "the release file to write")
	if _, err := inv.Parse("", 0, 0); err != nil {
		return err
	}
	var problems []error
	for _, f := range []struct{ name, v string }{
		{"kernel", *kernel}, {"initramfs", *initramfs}, {"arch", *arch}, {"board", *board},
		{"flavor", *flavor}, {"version", *version}, {"key", *keyRef}, {"out", *out},
	} {
		if f.v == "" {
			problems = append(problems, fmt.Errorf("--%s is required", f.name))
		}
	}
	sv, err := strconv.ParseUint(*secVersion, 10, 32)
	if err != nil || sv > release.MaxSecurityVersion {
		problems = append(problems, fmt.Errorf("--security-version %q: want a number 0..%d", *secVersion, release.MaxSecurityVersion))
	}
	if len(problems) > 0 {
		return usagef("%w", errors.Join(problems...))
	}

	signer, closeKey, err := openReleaseKey(*keyRef, *module)
	if err != nil {
		return err
	}
	defer closeKey()

	parts := map[string]io.Reader{}
	for name, path := range map[string]string{release.PartKernel: *kernel, release.PartInitramfs: *initramfs, release.PartDTB: *dtb} {
		if path == "" {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		defer f.Close()
		parts[name] = f
	}
	m := release.Manifest{
		Compatible:      release.Compatible{Arch: *arch, Board: *board, Flavor: *flavor},
		Version:         *version,
		SecurityVersion: uint32(sv),
	}
	sum, err := writeRelease(*out, func(w io.Writer) error { return release.Build(w, m, parts, signer) })
	if err != nil {
		return err
	}
	h, err := readReleaseHeader(*out, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.Stdout, "%s: %s\n", *out, summary(h, sum))
	return nil
}

// writeRelease writes a release file through build: beside out, synced,
// then renamed over it. It returns the file's SHA-256.
func writeRelease(out string, build func(io.Writer) error) (string, error) {
	dir := filepath.Dir(out)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".*")
	if err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	err = build(io.MultiWriter(tmp, h))
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// openReleaseKey opens a signing key named by a PEM file path (or
// file:///path) or a pkcs11: URI; close releases the token.
func openReleaseKey(ref, module string) (crypto.Signer, func(), error) {
	if !strings.HasPrefix(ref, "pkcs11:") {
		path := ref
		if strings.HasPrefix(ref, "file:") {
			r, err := config.ParseKeyRef(ref)
			if err != nil {
				return nil, nil, fmt.Errorf("--key: %w", err)
			}
			path = r.Path
		}
		key, err := readReleaseKey(path)
		if err != nil {
			return nil, nil, fmt.Errorf("--key %s: %w", path, err)
		}
		return key, func() {}, nil
	}
	r, err := config.ParseKeyRef(ref)
	if err != nil {
		return nil, nil, fmt.Errorf("--key: %w", err)
	}
	opts := keys.StoreOptions{}
	if module != "" {
		opts.PKCS11 = &config.PKCS11{P11Provider: module}
	} else if r.PKCS11["module-path"] == "" {
		return nil, nil, usagef("--key %s: no PKCS#11 module: add &module-path=/path/module.so or --pkcs11-module", r)
	}
	store := keys.NewStore(opts)
	key, err := store.Open(r.String())
	if err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("--key: %w", err)
	}
	if _, err := release.KeyID(key.Public()); err != nil {
		store.Close()
		return nil, nil, fmt.Errorf("--key %s: %w", r, err)
	}
	return key, func() { store.Close() }, nil
}

// readReleaseKey reads a PEM private key file: PKCS#8 ECDSA P-256 or
// Ed25519, or SEC1 "EC PRIVATE KEY".
func readReleaseKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var block *pem.Block
	for rest := data; ; {
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "EC PARAMETERS" {
			break
		}
	}
	if block == nil {
		return nil, errors.New("no PEM block: want a PEM private key (PRIVATE KEY or EC PRIVATE KEY)")
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the key is encrypted: decrypt it (openssl pkey) or keep it in a PKCS#11 token")
	default:
		return nil, fmt.Errorf("PEM block %q: want PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T cannot sign", key)
	}
	if _, err := release.KeyID(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}

// readReleaseHeader reads a release file's header, verified with v, or
// unverified when v is nil.
func readReleaseHeader(path string, v *release.Verifier) (*release.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var h *release.Header
	if v != nil {
		h, err = release.ReadHeader(f, v)
	} else {
		h, err = release.ReadUnverifiedHeader(f)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// summary is one line about a release: version, security version, sizes,
// key id and the file's SHA-256.
func summary(h *release.Header, fileSHA256 string) string {
	m := h.Manifest
	var sizes []string
	for _, p := range m.Parts {
		sizes = append(sizes, fmt.Sprintf("%s %d", p.Name, p.Size))
	}
	return fmt.Sprintf("release %s, security version %d, for %s/%s/%s; %s bytes (file %d); key %s; sha256 %s",
		m.Version, m.SecurityVersion, m.Compatible.Arch, m.Compatible.Board, m.Compatible.Flavor,
		strings.Join(sizes, ", "), h.Size+h.PayloadSize(), m.KeyID, fileSHA256)
}

// runReleaseShow runs "ggprov release show".
func runReleaseShow(_ context.Context, inv *cli.Invocation) error {
	fs := inv.Flags
	var pubs stringList
	fs.Var(&pubs, "pub", "a trusted release public key (PEM); repeatable. Without it the signature is not checked")
	asJSON := fs.Bool("json", false, "print the manifest bytes as signed, and nothing else")
	args, err := inv.Parse("RELEASE", 1, 1)
	if err != nil {
		return err
	}
	path := args[0]
	var v *release.Verifier
	if len(pubs) > 0 {
		if v, err = release.LoadVerifier(pubs...); err != nil {
			return fmt.Errorf("--pub: %w", err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fileHash := sha256.New()
	r := io.TeeReader(f, fileHash)
	var h *release.Header
	if v != nil {
		h, err = release.ReadHeader(r, v)
	} else {
		h, err = release.ReadUnverifiedHeader(r)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if *asJSON {
		_, err := fmt.Fprintf(inv.Stdout, "%s\n", h.Raw)
		return err
	}
	payloadErr := h.VerifyPayload(r)
	extra, _ := io.Copy(fileHash, f)

	m := h.Manifest
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s:\n", path)
	fmt.Fprintf(&b, "  version:          %s\n", m.Version)
	fmt.Fprintf(&b, "  security version: %d\n", m.SecurityVersion)
	fmt.Fprintf(&b, "  compatible:       arch %s, board %s, flavor %s\n", m.Compatible.Arch, m.Compatible.Board, m.Compatible.Flavor)
	fmt.Fprintf(&b, "  created:          %s\n", m.Created.Format("2006-01-02T15:04:05Z07:00"))
	for _, p := range m.Parts {
		fmt.Fprintf(&b, "  part %-11s  %d bytes, sha256 %s\n", p.Name+":", p.Size, p.SHA256)
	}
	d, pcr := h.Digest(), h.ExpectedPCR13()
	fmt.Fprintf(&b, "  manifest sha256:  %s\n", hex.EncodeToString(d[:]))
	fmt.Fprintf(&b, "  expected PCR 13:  %s\n", hex.EncodeToString(pcr[:]))
	fmt.Fprintf(&b, "  key id:           %s\n", m.KeyID)
	if v != nil {
		fmt.Fprintf(&b, "  signature:        good\n")
	} else {
		fmt.Fprintf(&b, "  signature:        NOT CHECKED (give --pub)\n")
	}
	if payloadErr == nil {
		fmt.Fprintf(&b, "  parts:            %d bytes, every hash matches\n", h.PayloadSize())
		fmt.Fprintf(&b, "  file sha256:      %s", hex.EncodeToString(fileHash.Sum(nil)))
		if extra > 0 {
			fmt.Fprintf(&b, " (%d bytes after the last part, as in a slot)", extra)
		}
		fmt.Fprintln(&b)
	}
	if _, err := inv.Stdout.Write(b.Bytes()); err != nil {
		return err
	}
	if payloadErr != nil {
		return fmt.Errorf("%s: %w", path, payloadErr)
	}
	return nil
}

// runReleasePCR runs "ggprov release pcr".
func runReleasePCR(_ context.Context, inv *cli.Invocation) error {
	args, err := inv.Parse("RELEASE", 1, 1)
	if err != nil {
		return err
	}
	h, err := readReleaseHeader(args[0], nil)
	if err != nil {
		return err
	}
	pcr := h.ExpectedPCR13()
	_, err = fmt.Fprintln(inv.Stdout, hex.EncodeToString(pcr[:]))
	return err
}
