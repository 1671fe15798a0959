package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// tarGz packs dir (files, directories and symbolic links) as a tar.gz
// archive in the test's temp dir and returns its path.
func tarGz(t *testing.T, dir string, extra map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if body, ok := extra[h.Name]; ok {
			h.Size = int64(len(body))
			delete(extra, h.Name)
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			_, err = tw.Write([]byte(body))
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range extra {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	path := filepath.Join(t.TempDir(), "code.tgz")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDeploymentCarriesFunctionCode: a Node.js function's code uploaded
// with `ggcloud function put-code` goes with the deployment, is checked
// and unpacked by the core, and the function runs; new code restarts it
// on the new version; unsafe code fails the deployment and the running
// group and code stay.
func TestDeploymentCarriesFunctionCode(t *testing.T) {
	t.Parallel()
	code := nodeFunctionCode(t)
	index, err := os.ReadFile(filepath.Join(code, "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	f, c, group := deployFleet(t, "dev1")
	traversable(t, f.dir) // functions run as their own user
	f.setConfig(t, "coreThing.ggDaemonPort", freePort(t))
	conf, _ := json.Marshal(nodeFunction(pinnedARN, "pinned", true)["FunctionConfiguration"])
	runOK(t, bin.ggcloud, "--data", c.data, "function", "put-code", "--arn", pinnedARN, "--file", tarGz(t, code, nil))
	runOK(t, bin.ggcloud, "--data", c.data, "function", "add", group, "--arn", pinnedARN, "--config", writeTemp(t, "fn.json", string(conf)))
	runOK(t, bin.ggcloud, "--data", c.data, "group", "add-subscription", group,
		"--id", "p2d", "--source", pinnedARN, "--subject", "fn/pinned/#", "--target", "dev1")
	core := startCore(t, f)
	start := time.Now()
	id := c.deploy(t, group)
	if s, out := c.waitStatus(t, group, id); s != "Success" {
		t.Fatalf("deployment %s: %s\ncore log:\n%s", id, out, core.log)
	}
	t.Logf("deployment with a Node.js function's code (npm SDK included): %v", time.Since(start))
	dev1 := f.connect5(t, "dev1")
	dev1.MustSubscribe(t, 0, "fn/pinned/#")
	if m := dev1.Next(t); !strings.Contains(m.Payload, `"hello":"from pinned"`) {
		t.Fatalf("dev1 got %v; want the deployed function's hello", m)
	}

	// New code: the function restarts on it.
	v2 := strings.Replace(string(index), "'from pinned'", "'from pinned v2'", 1)
	runOK(t, bin.ggcloud, "--data", c.data, "function", "put-code", "--arn", pinnedARN, "--file", tarGz(t, code, map[string]string{"index.js": v2}))
	id = c.deploy(t, group)
	if s, out := c.waitStatus(t, group, id); s != "Success" {
		t.Fatalf("deployment %s: %s\ncore log:\n%s", id, out, core.log)
	}
	testtool.Eventually(t, "the function publishes from its new code", func() bool {
		return strings.Contains(dev1.Next(t).Payload, `"hello":"from pinned v2"`)
	})
	codeRoot := filepath.Join(f.dir, "write", "deployment", "code")
	dirs, err := os.ReadDir(codeRoot)
	if err != nil || len(dirs) != 1 {
		t.Errorf("%s: %v, %v; want the new code only", codeRoot, dirs, err)
	}

	// Unsafe code: the deployment fails, nothing changes.
	groupBefore, _ := os.ReadFile(f.groupPath())
	runOK(t, bin.ggcloud, "--data", c.data, "function", "put-code", "--arn", pinnedARN,
		"--file", tarGz(t, code, map[string]string{"../escape.js": "x"}))
	bad := c.deploy(t, group)
	if s, out := c.waitStatus(t, group, bad); s != "Failure" || !strings.Contains(out, "unsafe") {
		t.Fatalf("deployment with unsafe code: %s %s; want Failure naming the unsafe entry", s, out)
	}
	if after, _ := os.ReadFile(f.groupPath()); !bytes.Equal(after, groupBefore) {
		t.Error("the refused deployment changed group.json")
	}
	if after, _ := os.ReadDir(codeRoot); len(after) != 1 || after[0].Name() != dirs[0].Name() {
		t.Errorf("the refused deployment changed the code: %v -> %v", dirs, after)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "write", "deployment", "escape.js")); err == nil {
		t.Error("the unsafe archive wrote outside the code directory")
	}
	if m := dev1.Next(t); !strings.Contains(m.Payload, `"hello":"from pinned v2"`) {
		t.Errorf("after the refused deployment dev1 got %v; want the running function's hello", m)
	}
}
