package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// A function's code uploaded with the CLI goes with the group's next
// deployment, by hash, to the deployment's core only.
func TestFunctionCodeCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := newPKI(t)
	core, device := provision(t, data, p)
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["greengrass:GetDeployment"],` +
		`"Resource":["arn:aws:greengrass:us-east-1:000000000000:/greengrass/groups/g1/deployments/*"]}]}`
	mustRun(t, "--data", data, "policy", "create", "core", "--document", write(t, p.dir, "core.json", []byte(doc)))
	mustRun(t, "--data", data, "policy", "attach", "core", "--cert", core.id)
	mustRun(t, "--data", data, "policy", "attach", "core", "--cert", device.id)
	s := serve(t, data, p)

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write([]byte("not really a tar, the core checks that"))
	gz.Close()
	archive := write(t, p.dir, "code.tgz", buf.Bytes())
	const arn = "arn:aws:lambda:us-east-1:000000000000:function:hello:1"
	if code, _, stderr := ggcloud("--data", data, "function", "put-code", "--arn", arn, "--file", archive, "--max-size", "10"); code == 0 || !strings.Contains(stderr, "max-size") {
		t.Errorf("put-code over --max-size: exit %d, %q", code, stderr)
	}
	out := mustRun(t, "--data", data, "function", "put-code", "--arn", arn, "--file", archive)
	sum := sha256.Sum256(buf.Bytes())
	hash := hex.EncodeToString(sum[:])
	if !strings.Contains(out, hash) {
		t.Errorf("put-code printed %q; want the SHA-256 %s", out, hash)
	}
	if out := mustRun(t, "--data", data, "function", "list"); !strings.Contains(out, arn+"\t"+hash) {
		t.Errorf("function list = %q", out)
	}
	conf := write(t, p.dir, "fn.json", []byte(`{"Executable":"index.handler","FunctionRuntimeOverride":"nodejs20.x","Pinned":true}`))
	mustRun(t, "--data", data, "function", "add", "g1", "--arn", arn, "--config", conf)
	id := strings.TrimSpace(mustRun(t, "--data", data, "group", "deploy", "g1"))

	get := func(c *http.Client, path string) (int, []byte) {
		resp, err := c.Get("https://" + s.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	base := "/greengrass/groups/g1/deployments/" + id
	if code, body := get(p.client(core, nil), base); code != 200 || !bytes.Contains(body, []byte(hash)) {
		t.Errorf("GetDeployment = %d; want the function's code referenced by hash:\n%s", code, body)
	}
	if code, body := get(p.client(core, nil), base+"/code/"+hash); code != 200 || !bytes.Equal(body, buf.Bytes()) {
		t.Errorf("core fetching its code = %d, %d bytes; want 200 and the archive", code, len(body))
	}
	if code, _ := get(p.client(device, nil), base+"/code/"+hash); code != http.StatusForbidden {
		t.Errorf("a device fetching the core's code = %d; want 403", code)
	}
	if code, _ := get(p.client(core, nil), base+"/code/"+strings.Repeat("0", 64)); code != http.StatusNotFound {
		t.Errorf("code the deployment does not reference = %d; want 404", code)
	}
}
