package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/ota/release"
)

// A release deployed with `group deploy --firmware` is stored by hash,
// named in the deployment's group.json as "Firmware", served to the
// deployment's core only, and the core's reports show in deployment
// status with their reason.
func TestGroupDeployFirmware(t *testing.T) {
	data := t.TempDir() + "/data"
	p := newPKI(t)
	core, device := provision(t, data, p)
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["greengrass:GetDeployment","greengrass:UpdateCoreDeploymentStatus"],` +
		`"Resource":["arn:aws:greengrass:us-east-1:000000000000:/greengrass/groups/g1/deployments/*"]}]}`
	mustRun(t, "--data", data, "policy", "create", "core", "--document", write(t, p.dir, "core.json", []byte(doc)))
	mustRun(t, "--data", data, "policy", "attach", "core", "--cert", core.id)
	mustRun(t, "--data", data, "policy", "attach", "core", "--cert", device.id)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var rel bytes.Buffer
	m := release.Manifest{Compatible: release.Compatible{Arch: "amd64", Board: "qemu-q35", Flavor: "tpm"}, Version: "1.3.0", SecurityVersion: 3}
	if err := release.Build(&rel, m, map[string]io.Reader{
		release.PartKernel: strings.NewReader("kernel"), release.PartInitramfs: strings.NewReader("initramfs"),
	}, key); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(rel.Bytes())
	hash := hex.EncodeToString(sum[:])

	// Not a release, or a release cut short: refused, nothing deployed.
	for name, body := range map[string][]byte{"notes.txt": []byte("hello"), "short.rel": rel.Bytes()[:rel.Len()-1]} {
		code, _, stderr := ggcloud("--data", data, "group", "deploy", "g1", "--firmware", write(t, p.dir, name, body))
		if code == 0 || !strings.Contains(stderr, "malformed release") {
			t.Errorf("deploy --firmware %s: exit %d, %q; want refused as a malformed release", name, code, stderr)
		}
	}
	if out := mustRun(t, "--data", data, "deployment", "list", "g1"); strings.TrimSpace(out) != "" {
		t.Errorf("a refused release made a deployment: %q", out)
	}

	id := strings.TrimSpace(mustRun(t, "--data", data, "group", "deploy", "g1", "--firmware", write(t, p.dir, "good.rel", rel.Bytes())))
	s := serve(t, data, p)
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
	code, body := get(p.client(core, nil), base)
	var g struct {
		Firmware *struct {
			Sha256 string
			Size   int64
		}
	}
	if code != 200 || json.Unmarshal(body, &g) != nil || g.Firmware == nil || g.Firmware.Sha256 != hash || g.Firmware.Size != int64(rel.Len()) {
		t.Fatalf("GetDeployment = %d; want Firmware {%s, %d}:\n%s", code, hash, rel.Len(), body)
	}
	if code, body := get(p.client(core, nil), base+"/code/"+hash); code != 200 || !bytes.Equal(body, rel.Bytes()) {
		t.Errorf("core fetching its release = %d, %d bytes; want 200 and the release", code, len(body))
	}
	if code, _ := get(p.client(device, nil), base+"/code/"+hash); code != http.StatusForbidden {
		t.Errorf("a device fetching the core's release = %d; want 403", code)
	}

	// A deployment without --firmware carries none.
	id2 := strings.TrimSpace(mustRun(t, "--data", data, "group", "deploy", "g1"))
	if _, body := get(p.client(core, nil), "/greengrass/groups/g1/deployments/"+id2); bytes.Contains(body, []byte("Firmware")) {
		t.Errorf("a plain deployment carries Firmware:\n%s", body)
	}

	// The core reports a refusal; status shows it.
	coreARN := "arn:aws:iot:us-east-1:000000000000:thing/gw"
	report := `{"Status":"Failure","ErrorMessage":"firmware: install: downgrade: release 1.3.0 has security version 3, this system accepts 4 or later"}`
	resp, err := p.client(core, nil).Post("https://"+s.addr+base+"/cores/"+url.QueryEscape(coreARN), "application/json", strings.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("UpdateCoreDeploymentStatus = %d", resp.StatusCode)
	}
	if out := mustRun(t, "--data", data, "deployment", "status", "g1", id); !strings.Contains(out, "Failure") || !strings.Contains(out, "downgrade") {
		t.Errorf("deployment status = %q; want Failure with the reason", out)
	}
}
