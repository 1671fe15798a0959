package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ggcore/ggcore/core/archive"
	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/deploy"
)

// Bounds on a function's code as a deployment delivers it.
const (
	// maxCodeArchive bounds one code archive as fetched.
	maxCodeArchive = 512 << 20
	// maxCodeUnpacked and maxCodeEntries bound what one archive unpacks to.
	maxCodeUnpacked = 1 << 30
	maxCodeEntries  = 100000
)

// codeRef is the "Code" member of a Functions entry, written by ggcloud:
// the function's code archive (zip or tar.gz) by SHA-256 (lowercase hex)
// and size in bytes.
type codeRef struct {
	Sha256 string `json:"Sha256"`
	Size   int64  `json:"Size"`
}

// functionCode returns the code each of g's functions references, by
// FunctionArn; a function without "Code" has its code placed by hand in
// <writeDirectory>/deployment/lambda/<FunctionArn>.
func functionCode(g *config.Group) (map[string]codeRef, error) {
	refs := map[string]codeRef{}
	for i, raw := range g.Functions {
		var e struct {
			FunctionArn string
			Code        *codeRef
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("group.json Functions[%d]: %w", i, err)
		}
		if e.Code == nil {
			continue
		}
		if b, err := hex.DecodeString(e.Code.Sha256); err != nil || len(b) != sha256.Size || strings.ToLower(e.Code.Sha256) != e.Code.Sha256 {
			return nil, fmt.Errorf("Functions[%d].Code.Sha256: %q: want 64 lowercase hex digits", i, e.Code.Sha256)
		}
		if e.Code.Size <= 0 || e.Code.Size > maxCodeArchive {
			return nil, fmt.Errorf("Functions[%d].Code.Size: %d: want 1 to %d bytes", i, e.Code.Size, maxCodeArchive)
		}
		refs[e.FunctionArn] = *e.Code
	}
	return refs, nil
}

// codeRoot holds the deployed code: one directory per archive, named by
// its SHA-256.
func codeRoot(cfg *config.Config) string {
	return filepath.Join(cfg.WriteDirectory, "deployment", "code")
}

// functionDir is where a function's code is: its deployed archive's
// directory, else v1's place (codeDir).
func functionDir(cfg *config.Config, refs map[string]codeRef, arn string) string {
	if r, ok := refs[arn]; ok {
		return filepath.Join(codeRoot(cfg), r.Sha256)
	}
	return codeDir(cfg, arn)
}

// prepareDeployment is the deployer's Prepare: the firmware, the functions' code, then
// the secrets; either failing undoes the other.
func (c *core) prepareDeployment(cloud *controlplane.Client) func(context.Context, controlplane.DeploymentRef, []byte, checkedGroup) (func(), func(), error) {
	code, secrets, firmware := c.prepareCode(cloud), c.prepareSecrets(cloud), c.prepareFirmware(cloud)
	return func(ctx context.Context, ref controlplane.DeploymentRef, data []byte, g checkedGroup) (func(), func(), error) {
		commitFirmware, abortFirmware, err := firmware(ctx, ref, data, g)
		if err != nil {
			return nil, nil, err
		}
		commitCode, abortCode, err := code(ctx, ref, data, g)
		if err != nil {
			abortFirmware()
			return nil, nil, err
		}
		commitSecrets, abortSecrets, err := secrets(ctx, ref, data, g)
		if err != nil {
			abortCode()
			abortFirmware()
			return nil, nil, err
		}
		return func() { commitSecrets(); commitCode(); commitFirmware() }, func() { abortSecrets(); abortCode(); abortFirmware() }, nil
	}
}

// prepareCode fetches each code archive the deployment references and
// does not have yet, checks its size and SHA-256 while streaming it to a
// file under the write directory, unpacks it into a staging directory and
// renames that to <code root>/<sha256>. Nothing running uses it until the
// group switches (functions whose code changed restart then, their
// directory being new); abort removes what was added, commit removes the
// directories the new group no longer references.
func (c *core) prepareCode(cloud *controlplane.Client) func(context.Context, controlplane.DeploymentRef, []byte, checkedGroup) (func(), func(), error) {
	return func(ctx context.Context, ref controlplane.DeploymentRef, _ []byte, g checkedGroup) (func(), func(), error) {
		refs, err := functionCode(g.g)
		if err != nil {
			return nil, nil, fmt.Errorf("function code: %w", err)
		}
		root := codeRoot(c.cfg)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, nil, fmt.Errorf("function code: %w", err)
		}
		removeStaging(root)
		var added []string
		undo := func() {
			for _, d := range added {
				os.RemoveAll(d)
			}
		}
		arns := make([]string, 0, len(refs))
		for arn := range refs {
			arns = append(arns, arn)
		}
		slices.Sort(arns)
		for _, arn := range arns {
			r := refs[arn]
			dir := filepath.Join(root, r.Sha256)
			if _, err := os.Stat(dir); err == nil {
				continue
			}
			if err := fetchCode(ctx, cloud, ref, r, root, dir); err != nil {
				undo()
				return nil, nil, fmt.Errorf("function %s: code %s: %w", arn, r.Sha256, err)
			}
			added = append(added, dir)
			c.log.Info("function code unpacked", "function", arn, "sha256", r.Sha256, "bytes", r.Size)
		}
		commit := func() {
			keep := map[string]bool{}
			for _, r := range refs {
				keep[r.Sha256] = true
			}
			entries, _ := os.ReadDir(root)
			for _, e := range entries {
				if !keep[e.Name()] && !strings.HasPrefix(e.Name(), ".") {
					if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
						c.log.Warn("could not remove old function code", "dir", e.Name(), "error", err)
					}
				}
			}
		}
		return commit, undo, nil
	}
}

// removeStaging removes what an interrupted deployment left in root.
func removeStaging(root string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".stage-") {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// fetchCode streams one archive into root, checks it and unpacks it to
// dir (staged, then renamed). A mismatch or an unsafe archive fails the
// deployment; an unreachable control plane is tried again later.
func fetchCode(ctx context.Context, cloud *controlplane.Client, ref controlplane.DeploymentRef, r codeRef, root, dir string) error {
	f, err := os.CreateTemp(root, ".stage-*.archive")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := cloud.GetFunctionCode(ctx, ref, r.Sha256, r.Size, io.MultiWriter(f, h))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil && (controlplane.Refused(err) || errors.Is(err, controlplane.ErrTooLarge)):
		return fmt.Errorf("fetch: %w (the deployment says %d bytes)", err, r.Size)
	case err != nil:
		return deploy.Retry(fmt.Errorf("fetch: %w", err))
	case n != r.Size:
		return fmt.Errorf("size mismatch: got %d bytes, the deployment says %d", n, r.Size)
	case hex.EncodeToString(h.Sum(nil)) != r.Sha256:
		return fmt.Errorf("SHA-256 mismatch: got %x", h.Sum(nil))
	}
	stage, err := os.MkdirTemp(root, ".stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	unpacked := filepath.Join(stage, "code")
	if err := archive.Unpack(f.Name(), unpacked, archive.Limits{MaxBytes: maxCodeUnpacked, MaxEntries: maxCodeEntries}); err != nil {
		return err
	}
	if err := os.Chmod(unpacked, 0o755); err != nil {
		return err
	}
	if err := os.Rename(unpacked, dir); err != nil {
		return err
	}
	if d, err := os.Open(root); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
