package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ggcore/ggcore/tools/ggcloud/admin"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// maxSecretInput bounds a value read from a file or stdin (the store
// refuses more than 64 KiB).
const maxSecretInput = 1 << 20

// secretValue reads a secret's value from --from-file, else stdin (never
// from the command line, where other users could read it), as a string
// or, with --binary, as bytes.
func secretValue(path string, binary bool) (*string, []byte, error) {
	var r io.Reader = os.Stdin
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSecretInput))
	if err != nil {
		return nil, nil, fmt.Errorf("read the secret value: %w", err)
	}
	if binary {
		return nil, data, nil
	}
	s := string(data)
	return &s, nil, nil
}

func runSecretCreate(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("secret create", g, stderr)
	from := fs.String("from-file", "", "read the value from FILE (default: stdin)")
	binary := fs.Bool("binary", false, "store the value as SecretBinary (default: SecretString)")
	pos, err := parse(fs, args, 1, false, "NAME")
	if err != nil {
		return err
	}
	str, bin, err := secretValue(*from, *binary)
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		s, err := c.CreateSecret(ctx, admin.NewSecret{Name: pos[0], SecretString: str, SecretBinary: bin})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "secret %s: %s, version %s (%s)\n", s.Name, s.ARN, s.Versions[0].ID, strings.Join(s.Versions[0].Stages, ","))
		return nil
	})
}

func runSecretPutValue(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("secret put-value", g, stderr)
	from := fs.String("from-file", "", "read the value from FILE (default: stdin)")
	binary := fs.Bool("binary", false, "store the value as SecretBinary (default: SecretString)")
	stages := fs.String("stages", "", "comma-separated staging labels for the new version (default: AWSCURRENT)")
	pos, err := parse(fs, args, 1, false, "SECRET")
	if err != nil {
		return err
	}
	str, bin, err := secretValue(*from, *binary)
	if err != nil {
		return err
	}
	var labels []string
	if *stages != "" {
		labels = strings.Split(*stages, ",")
	}
	return withClient(g, func(c *admin.Client) error {
		v, err := c.PutSecretValue(ctx, admin.SecretValue{SecretId: pos[0], SecretString: str, SecretBinary: bin, VersionStages: labels})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "secret %s: version %s (%s)\n", pos[0], v.ID, strings.Join(v.Stages, ","))
		return nil
	})
}

func runSecretList(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if _, err := parse(flags("secret list", g, stderr), args, 0, false, ""); err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		list, err := c.ListSecrets(ctx)
		if err != nil {
			return err
		}
		for _, s := range list {
			fmt.Fprintf(stdout, "%s\t%s\n", s.Name, s.ARN)
			for _, v := range s.Versions {
				stages := strings.Join(v.Stages, ",")
				if stages == "" {
					stages = "-"
				}
				fmt.Fprintf(stdout, "\tversion %s\t%s\t%s\n", v.ID, stages, v.CreatedAt.Format("2006-01-02T15:04:05Z"))
			}
		}
		return nil
	})
}

func runGroupAddSecret(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("group add-secret", g, stderr)
	id := fs.String("resource-id", "", "the resource's Id (what functions' ResourceAccessPolicies name)")
	name := fs.String("name", "", "the resource's Name (default: its Id)")
	secret := fs.String("secret", "", "the secret: its name or ARN")
	labels := fs.String("labels", "", "comma-separated staging labels deployed besides AWSCURRENT")
	pos, err := parse(fs, args, 1, false, "ID")
	if err != nil {
		return err
	}
	if *id == "" || *secret == "" {
		return usagef("--resource-id and --secret are required")
	}
	r := store.SecretResource{Id: *id, Name: *name, ARN: *secret}
	if *labels != "" {
		r.AdditionalStagingLabelsToDownload = strings.Split(*labels, ",")
	}
	return withClient(g, func(c *admin.Client) error {
		r, err := c.AddSecretResource(ctx, pos[0], r)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: resource %s: secret %s; deploy the group to apply it\n", pos[0], r.Id, r.ARN)
		return nil
	})
}

func runGroupRemoveResource(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	pos, err := parse(flags("group remove-resource", g, stderr), args, 2, false, "ID RESOURCE")
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		if err := c.RemoveResource(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: resource %s removed; deploy the group to apply it\n", pos[0], pos[1])
		return nil
	})
}
