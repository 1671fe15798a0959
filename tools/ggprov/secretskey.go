package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/tools/ggcloud/admin"
)

// secretsPubPath is where a bundle keeps the SecretsManager public key.
const secretsPubPath = "certs/secrets.pub.pem"

// writePublicKey writes key's public key as a PEM PUBLIC KEY.
func writePublicKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("SecretsManager public key: %w", err)
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

// secretsPublicKey returns the bundle's SecretsManager public key (PEM):
// certs/secrets.pub.pem, or, for a bundle made before ggprov wrote it,
// the public part of the configured key (opening its TPM or token).
func secretsPublicKey(dir string, cfg *config.Config) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(dir, secretsPubPath))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return data, err
	}
	ref := cfg.Crypto.Principals.SecretsManager.PrivateKey
	if ref == "" {
		ref = cfg.Crypto.Principals.IoTCertificate.PrivateKey
	}
	store := keys.NewStore(keys.StoreOptions{TPMDevice: cfg.GGCore.TPM.Device, PKCS11: cfg.Crypto.PKCS11})
	defer store.Close()
	key, err := store.Open(ref)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// registerSecretsKey records the core's SecretsManager public key in
// ggcloud, which seals the group's secrets to it. A bundle whose key
// cannot be read or is not RSA is registered without it, with a warning:
// its group can be deployed, but not with secrets.
func registerSecretsKey(ctx context.Context, cloud *admin.Client, dir string, cfg *config.Config, stdout, stderr io.Writer) error {
	pub, err := secretsPublicKey(dir, cfg)
	if err == nil {
		err = cloud.SetSecretsKey(ctx, cfg.CoreThing.ThingName, pub)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ggprov: register: the SecretsManager public key is not registered (%v): secrets cannot be deployed to this core\n", err)
		return nil
	}
	fmt.Fprintf(stdout, "registered the SecretsManager public key of %s\n", cfg.CoreThing.ThingName)
	return nil
}
