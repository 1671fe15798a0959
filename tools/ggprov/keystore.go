package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/internal/cli"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// storeFlags are the flags that name a TPM or a PKCS#11 token, shared by
// init and keys create.
type storeFlags struct {
	tpmDevice    string
	pkcs11Module string
	pkcs11Token  string
	pinSource    string // file:///path of a file holding the user PIN
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.tpmDevice, "tpm-device", keyspec.DefaultTPMDevice,
		"the TPM: a device node, unix:///path or tcp://HOST:PORT (swtpm), as ggcore.tpm.device")
	fs.StringVar(&f.pkcs11Module, "pkcs11-module", "", "absolute path of the PKCS#11 module (.so)")
	fs.StringVar(&f.pkcs11Token, "pkcs11-token", "", "label of the PKCS#11 token")
	fs.StringVar(&f.pinSource, "pkcs11-pin-source", "", "file:///path of a file holding the token's user PIN")
}

// check validates the flags a key backend needs (keyspec.TPM or
// keyspec.PKCS11; keyspec.File needs none).
func (f *storeFlags) check(backend keyspec.Backend) []error {
	var problems []error
	switch backend {
	case keyspec.TPM:
		if _, err := keyspec.ParseTPMDevice(f.tpmDevice); err != nil {
			problems = append(problems, fmt.Errorf("--tpm-device: %v", err))
		}
	case keyspec.PKCS11:
		if !filepath.IsAbs(f.pkcs11Module) {
			problems = append(problems, fmt.Errorf("--pkcs11-module %q: want the absolute path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so", f.pkcs11Module))
		}
		if f.pkcs11Token == "" {
			problems = append(problems, errors.New("--pkcs11-token: want the token's label"))
		}
		if r, err := config.ParseKeyRef(f.pinSource); err != nil || r.Scheme != config.SchemeFile {
			problems = append(problems, fmt.Errorf("--pkcs11-pin-source %q: want file:///path of a file holding the user PIN", f.pinSource))
		}
	}
	return problems
}

// storeOptions are the keys.StoreOptions the flags describe.
func (f *storeFlags) storeOptions() keys.StoreOptions {
	o := keys.StoreOptions{TPMDevice: f.tpmDevice}
	if f.pkcs11Module != "" || f.pkcs11Token != "" {
		o.PKCS11 = &config.PKCS11{P11Provider: f.pkcs11Module, SlotLabel: f.pkcs11Token}
	}
	return o
}

// tokenKeyRef is the pkcs11: reference of the key labelled object on the
// flags' token, reading its PIN from the pin source; config.KeyRef spells
// it canonically, percent-encoding what needs it.
func (f *storeFlags) tokenKeyRef(object string) string {
	attrs := map[string]string{"object": object, "token": f.pkcs11Token, "type": "private"}
	if f.pinSource != "" {
		attrs["pin-source"] = f.pinSource
	}
	return config.KeyRef{Scheme: config.SchemePKCS11, PKCS11: attrs}.String()
}

// runKeysCreate runs "ggprov keys create": it makes a key in a TPM or a
// PKCS#11 token and prints its public key and, for a signing key, a CSR.
func runKeysCreate(_ context.Context, inv *cli.Invocation) error {
	stdout, stderr := inv.Stdout, inv.Stderr
	fs := inv.Flags
	uri := fs.String("uri", "", "where to make the key: file:///path.pem (TPM key file), tpm2:handle=0x81…, or pkcs11:object=LABEL;type=private")
	typ := fs.String("type", "", "key type: rsa2048, rsa3072, ecp256 or ecp384")
	use := fs.String("usage", "sign", "sign (TLS keys) or decrypt (the SecretsManager key; RSA only)")
	subject := fs.String("subject", "", "common name of the CSR (default: the key's label or file name)")
	var sf storeFlags
	sf.register(fs)
	if _, err := inv.Parse("", 0, 0); err != nil {
		return err
	}
	var problems []error
	ref, err := config.ParseKeyRef(*uri)
	if err != nil {
		problems = append(problems, fmt.Errorf("--uri: %v", err))
	}
	kt, err := keyspec.ParseType(*typ)
	if err != nil {
		problems = append(problems, fmt.Errorf("--type: %v", err))
	}
	usage, err := keyspec.ParseUsage(*use)
	if err != nil {
		problems = append(problems, fmt.Errorf("--usage: %v", err))
	}
	switch ref.Scheme {
	case config.SchemeFile, config.SchemeTPM2:
		problems = append(problems, sf.check(keyspec.TPM)...)
	case config.SchemePKCS11:
		a := ref.PKCS11
		if a["module-path"] == "" && sf.pkcs11Module == "" {
			problems = append(problems, errors.New("--pkcs11-module (or module-path= in the URI) is required for a pkcs11: key"))
		}
		if _, ok := a["token"]; !ok && sf.pkcs11Token == "" {
			problems = append(problems, errors.New("--pkcs11-token (or token= in the URI) is required for a pkcs11: key"))
		}
		_, pinValue := a["pin-value"]
		_, pinSource := a["pin-source"]
		if !pinValue && !pinSource && sf.pinSource == "" {
			problems = append(problems, errors.New("--pkcs11-pin-source (or pin-source= in the URI) is required for a pkcs11: key"))
		}
	}
	if len(problems) > 0 {
		return usagef("%w", errors.Join(problems...))
	}

	opts := sf.storeOptions()
	if ref.Scheme == config.SchemePKCS11 && sf.pinSource != "" {
		pin, err := keys.ReadPINSource(sf.pinSource)
		if err != nil {
			return fmt.Errorf("--pkcs11-pin-source: %w", err)
		}
		if opts.PKCS11 == nil {
			opts.PKCS11 = &config.PKCS11{}
		}
		opts.PKCS11.SlotUserPin = pin
	}
	store := keys.NewStore(opts)
	defer store.Close()
	fmt.Fprintf(stderr, "ggprov: creating a %s %s key at %s (%s)\n", kt, *use, ref, where(ref, sf))
	key, err := store.Create(*uri, kt, usage)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("encode the public key: %w", err)
	}
	if err := pem.Encode(stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}); err != nil {
		return err
	}
	if usage == keyspec.Decrypt {
		fmt.Fprintln(stderr, "ggprov: a decryption key cannot sign, so no CSR; use its public key to wrap secrets")
		return nil
	}
	cn := *subject
	if cn == "" {
		cn = defaultSubject(ref)
	}
	csr, err := makeCSR(key, cn)
	if err != nil {
		return err
	}
	return pem.Encode(stdout, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})
}

// where names the TPM or token a reference's key is made in.
func where(ref config.KeyRef, sf storeFlags) string {
	if ref.Scheme == config.SchemePKCS11 {
		module, token := ref.PKCS11["module-path"], ref.PKCS11["token"]
		if module == "" {
			module = sf.pkcs11Module
		}
		if token == "" {
			token = sf.pkcs11Token
		}
		return fmt.Sprintf("token %q of %s", token, module)
	}
	return "TPM " + sf.tpmDevice
}

// defaultSubject is a CSR common name taken from the reference: the
// object label, the file name without extension, or the handle.
func defaultSubject(ref config.KeyRef) string {
	switch ref.Scheme {
	case config.SchemePKCS11:
		return ref.PKCS11["object"]
	case config.SchemeFile:
		base := filepath.Base(ref.Path)
		base = strings.TrimSuffix(base, filepath.Ext(base))
		return strings.TrimSuffix(base, ".key")
	}
	return fmt.Sprintf("tpm-0x%08x", ref.Handle)
}

// makeCSR signs a certificate signing request with key, which proves the
// TPM or token holds its private part.
func makeCSR(key crypto.Signer, commonName string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: commonName},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("sign CSR: %w", err)
	}
	return der, nil
}
