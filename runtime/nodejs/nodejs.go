// Package nodejs holds ggcore's clean-room Node.js runtime for v1 local
// functions (lambda_nodejs_runtime.js, and under modules/ the two modules
// the npm aws-greengrass-core-sdk requires from the core:
// aws-greengrass-common-js and aws-greengrass-ipc-sdk-js), embedded in
// ggcore and written to disk with Install.
package nodejs

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed lambda_nodejs_runtime.js modules
var files embed.FS

// Install writes the runtime into dir (replacing what is there): the
// runtime script at dir/lambda_nodejs_runtime.js, the modules under
// dir/modules (a NODE_PATH entry). Files are world-readable, so that
// functions running under their own uid can load them.
func Install(dir string) error {
	tmp := dir + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("nodejs: install: %w", err)
	}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(tmp, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err == nil {
		err = os.RemoveAll(dir)
	}
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		return fmt.Errorf("nodejs: install into %s: %w", dir, err)
	}
	return nil
}
