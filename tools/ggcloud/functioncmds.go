package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/ggcore/ggcore/tools/ggcloud/admin"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

func runFunctionPutCode(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("function put-code", g, stderr)
	arn := fs.String("arn", "", "the function's ARN (required)")
	file := fs.String("file", "", "the code archive, zip or tar.gz (required)")
	maxSize := fs.Int64("max-size", store.DefaultMaxCodeSize, "refuse an archive larger than this many bytes")
	if _, err := parse(fs, args, 0, false, ""); err != nil {
		return err
	}
	if *arn == "" || *file == "" {
		return usagef("--arn and --file are required")
	}
	if *maxSize <= 0 {
		return usagef("--max-size %d: want a positive number of bytes", *maxSize)
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, *maxSize+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", *file, err)
	}
	if int64(len(data)) > *maxSize {
		return fmt.Errorf("%s: more than --max-size %d bytes", *file, *maxSize)
	}
	return withClient(g, func(c *admin.Client) error {
		fc, err := c.PutFunctionCode(ctx, *arn, data, *maxSize)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "function %s: code sha256 %s, %d bytes (deployed with the group's next deployment)\n", fc.FunctionArn, fc.Sha256, fc.Size)
		return nil
	})
}

func runFunctionAdd(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("function add", g, stderr)
	arn := fs.String("arn", "", "the function's ARN (required)")
	conf := fs.String("config", "", "a JSON file holding v1's FunctionConfiguration (required)")
	id := fs.String("id", "", "the entry's Id (default: from the ARN)")
	pos, err := parse(fs, args, 1, false, "GROUP")
	if err != nil {
		return err
	}
	if *arn == "" || *conf == "" {
		return usagef("--arn and --config are required")
	}
	data, err := os.ReadFile(*conf)
	if err != nil {
		return err
	}
	if !json.Valid(data) {
		return fmt.Errorf("%s: not JSON", *conf)
	}
	return withClient(g, func(c *admin.Client) error {
		f, err := c.AddFunction(ctx, pos[0], store.Function{Id: *id, FunctionArn: *arn, FunctionConfiguration: data})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: function %s (Id %s)\n", pos[0], f.FunctionArn, f.Id)
		return nil
	})
}

func runFunctionList(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("function list", g, stderr)
	if _, err := parse(fs, args, 0, false, ""); err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		codes, err := c.ListFunctionCode(ctx)
		if err != nil {
			return err
		}
		for _, fc := range codes {
			fmt.Fprintf(stdout, "%s\t%s\t%d\n", fc.FunctionArn, fc.Sha256, fc.Size)
		}
		return nil
	})
}
