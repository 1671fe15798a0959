package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

const (
	pinnedARN   = "arn:aws:lambda:us-east-1:123456789012:function:pinned:1"
	onDemandARN = "arn:aws:lambda:us-east-1:123456789012:function:ondemand:1"
	crasherARN  = "arn:aws:lambda:us-east-1:123456789012:function:crasher:1"
)

// nodeFunctionCode installs testdata/nodefn (a function using the
// unmodified npm aws-greengrass-core-sdk) into a directory of its own
// with npm ci, once per test binary run, and returns it.
func nodeFunctionCode(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		testtool.Unavailable(t, "node not found in PATH: local Node.js functions need it (Debian: `apt-get install nodejs npm`)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		testtool.Unavailable(t, "npm not found in PATH: it installs aws-greengrass-core-sdk (Debian: `apt-get install npm`)")
	}
	dir := filepath.Join(t.TempDir(), "nodefn")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"package.json", "package-lock.json", "index.js"} {
		b, err := os.ReadFile(filepath.Join("testdata", "nodefn", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return dir
}

// deployFunctionCode copies the code into the core's function directory
// (<writeDirectory>/deployment/lambda/<arn>).
func (f *fleet) deployFunctionCode(t *testing.T, arn, src string) {
	t.Helper()
	dst := filepath.Join(f.dir, "write", "deployment", "lambda", arn)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v\n%s", src, dst, err, out)
	}
}

func nodeFunction(arn, role string, pinned bool) map[string]any {
	return map[string]any{"Id": role, "FunctionArn": arn, "FunctionConfiguration": map[string]any{
		"Executable": "index.handler", "FunctionRuntimeOverride": "nodejs20.x", "Pinned": pinned,
		"MemorySize": 262144, "Timeout": 10, "EncodingType": "json",
		"Environment": map[string]any{"Variables": map[string]any{"ROLE": role}},
	}}
}

// Local functions with the unmodified npm SDK: a pinned function's
// publishes reach a device through a route; a device's message invokes an
// on-demand function, whose reply reaches another device; a crashing
// pinned function is restarted and counted; a forged token is refused.
func TestLocalFunctions(t *testing.T) {
	t.Parallel()
	code := nodeFunctionCode(t)
	f := newFleet(t, "dev1", "dev2", "dev3")
	traversable(t, f.dir) // functions run as their own user
	ipcPort := freePort(t)
	f.setConfig(t, "coreThing.ggDaemonPort", ipcPort)
	for _, arn := range []string{pinnedARN, onDemandARN, crasherARN} {
		f.deployFunctionCode(t, arn, code)
	}
	g := readJSON(t, f.groupPath())
	thing := func(dev string) string { arn, _ := f.device(t, g, dev)["ThingArn"].(string); return arn }
	g["Functions"] = []any{nodeFunction(pinnedARN, "pinned", true), nodeFunction(onDemandARN, "ondemand", false),
		nodeFunction(crasherARN, "crasher", true)}
	g["Subscriptions"] = []any{
		map[string]any{"Id": "p2d", "Source": pinnedARN, "Subject": "fn/pinned/#", "Target": thing("dev3")},
		map[string]any{"Id": "d2f", "Source": thing("dev1"), "Subject": "cmd/dev1/#", "Target": onDemandARN},
		map[string]any{"Id": "f2d", "Source": onDemandARN, "Subject": "fn/reply/#", "Target": thing("dev2")},
	}
	writeJSON(t, f.groupPath(), g)
	core := startCore(t, f)

	t.Run("pinned function publishes to a device", func(t *testing.T) {
		dev3 := f.connect5(t, "dev3")
		dev3.MustSubscribe(t, 0, "fn/pinned/#")
		m := dev3.Next(t)
		if m.Topic != "fn/pinned/hello" || !strings.Contains(m.Payload, `"hello":"from pinned"`) {
			t.Fatalf("dev3 got %v; want the pinned function's hello", m)
		}
	})

	t.Run("device invokes an on-demand function whose reply reaches another device", func(t *testing.T) {
		dev1, dev2 := f.connect5(t, "dev1"), f.connect5(t, "dev2")
		dev2.MustSubscribe(t, 0, "fn/reply/#")
		start := time.Now()
		dev1.MustPublish(t, "cmd/dev1/go", `{"temp":21.5}`, 1, false)
		m := dev2.Next(t)
		var reply struct {
			Got     map[string]any `json:"got"`
			Subject string         `json:"subject"`
		}
		if err := json.Unmarshal([]byte(m.Payload), &reply); err != nil || reply.Subject != "cmd/dev1/go" || reply.Got["temp"] != 21.5 {
			t.Fatalf("dev2 got %v; want the function's reply with the event and its topic", m)
		}
		t.Logf("device → on-demand function (cold start) → device: %v", time.Since(start))
		start = time.Now()
		dev1.MustPublish(t, "cmd/dev1/go", `{"temp":22}`, 1, false)
		dev2.Next(t)
		t.Logf("device → on-demand function (warm) → device: %v", time.Since(start))
	})

	t.Run("crashing pinned function is restarted and counted", func(t *testing.T) {
		testtool.Eventually(t, "two restarts of the crasher logged", func() bool {
			return strings.Contains(core.log.String(), "restarts=2")
		})
	})

	t.Run("forged token refused", func(t *testing.T) {
		url := fmt.Sprintf("http://127.0.0.1:%d/2016-11-01/functions/arn:aws:lambda:::function:GGRouter", ipcPort)
		for _, tok := range []string{"", "Basic Zm9yZ2Vk", strings.Repeat("0", 64)} {
			req, _ := http.NewRequest("POST", url, strings.NewReader("x"))
			if tok != "" {
				req.Header.Set("Authorization", tok)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized {
				t.Errorf("token %q: status %d, want 401", tok, res.StatusCode)
			}
		}
	})
}
