package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/deploy"
	"github.com/ggcore/ggcore/core/secrets"
)

// secretsKey is the key that opens deployed secrets: SecretsManager's,
// or, as in v1, the IoT key when SecretsManager names none; nil when
// neither can decrypt.
func secretsKey(ps principals) crypto.Decrypter {
	for _, k := range []crypto.Signer{ps.secrets, ps.iot} {
		if k == nil {
			continue
		}
		dec, _ := k.(crypto.Decrypter)
		return dec
	}
	return nil
}

// openSecrets makes the secrets store under <writeDirectory>/secrets and
// loads the running group's secrets. A failure to load them is logged:
// the core serves its devices regardless, and functions get no secret
// until the next deployment.
func (c *core) openSecrets(ps principals, g *config.Group) {
	c.secrets = secrets.New(filepath.Join(c.cfg.WriteDirectory, "secrets"), secretsKey(ps), c.log)
	c.loadSecrets(g)
}

// loadSecrets serves the stored secrets of the group.json on disk, g.
func (c *core) loadSecrets(g *config.Group) {
	data, err := os.ReadFile(c.cfg.GroupPath())
	if err == nil {
		err = c.secrets.Load(g.GroupId, data, g.SecretResources())
	}
	if err != nil {
		c.log.Error("the group's secrets are unavailable until the next deployment", "error", err)
	}
}

// prepareSecrets is the deployer's Prepare: it fetches the deployment's
// secrets from the control plane, checks that they open with the
// SecretsManager key and match the group, and stages them; the running
// secrets change only when the group does.
func (c *core) prepareSecrets(cloud *controlplane.Client) func(context.Context, controlplane.DeploymentRef, []byte, checkedGroup) (func(), func(), error) {
	return func(ctx context.Context, ref controlplane.DeploymentRef, data []byte, g checkedGroup) (func(), func(), error) {
		resources := g.g.SecretResources()
		var envelope []byte
		if len(resources) > 0 {
			var err error
			envelope, err = cloud.GetDeploymentSecrets(ctx, ref)
			switch {
			case errors.Is(err, controlplane.ErrNoSecrets):
			case err != nil && (controlplane.Refused(err) || errors.Is(err, controlplane.ErrTooLarge)):
				return nil, nil, fmt.Errorf("secrets: fetch: %w", err)
			case err != nil:
				return nil, nil, deploy.Retry(fmt.Errorf("deploy: secrets: fetch: %w", err))
			}
		}
		staged, err := c.secrets.Stage(ref.GroupId, ref.DeploymentId, data, envelope, resources)
		if err != nil {
			return nil, nil, err
		}
		return staged.Commit, staged.Abort, nil
	}
}
