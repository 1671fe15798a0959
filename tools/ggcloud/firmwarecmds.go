package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/ggcore/ggcore/tools/ggcloud/admin"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// deployFirmware uploads the release file and deploys the group with it.
func deployFirmware(ctx context.Context, g *globals, group, file string, stdout io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("--firmware: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, store.DefaultMaxFirmwareSize+1))
	if err != nil {
		return fmt.Errorf("--firmware: read %s: %w", file, err)
	}
	if len(data) > store.DefaultMaxFirmwareSize {
		return fmt.Errorf("--firmware: %s: more than %d bytes", file, store.DefaultMaxFirmwareSize)
	}
	return withClient(g, func(c *admin.Client) error {
		fw, err := c.PutFirmware(ctx, data, 0)
		if err != nil {
			return err
		}
		id, err := c.DeployFirmware(ctx, group, fw.Sha256)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, id)
		return nil
	})
}
