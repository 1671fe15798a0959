package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// Functions of TestFunctionsThroughDeployment.
const (
	goReaderARN   = "arn:aws:lambda:us-east-1:123456789012:function:go-reader:1"
	nodeReaderARN = "arn:aws:lambda:us-east-1:123456789012:function:node-reader:1"
	intruderARN   = "arn:aws:lambda:us-east-1:123456789012:function:intruder:1"
	sleeperARN    = "arn:aws:lambda:us-east-1:123456789012:function:sleeper:1"
	invokerARN    = "arn:aws:lambda:us-east-1:123456789012:function:invoker:1"
	goEchoARN     = "arn:aws:lambda:us-east-1:123456789012:function:go-echo:1"
	nodeEchoARN   = "arn:aws:lambda:us-east-1:123456789012:function:node-echo:1"
)

// goFunctionCode builds tests/gofn (a static Go function on the
// core/ipc/ggfunc client) and packs it as function code: gofn at the top.
func goFunctionCode(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "gofn")
	if err := goBuild(filepath.Join(dir, "gofn"), "github.com/ggcore/ggcore/tests/gofn", false); err != nil {
		t.Fatal(err)
	}
	return tarGz(t, dir, nil)
}

// traversable lets every user search dir and the directories above it up
// to the temporary directory: run by root, ggcore runs functions as
// another user, which must reach the code under the write directory.
func traversable(t *testing.T, dir string) {
	t.Helper()
	root := filepath.Clean(os.TempDir())
	for d := filepath.Clean(dir); strings.HasPrefix(d, root+string(filepath.Separator)); d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, info.Mode().Perm()|0o111); err != nil {
			t.Fatal(err)
		}
	}
}

// addFunction uploads code for arn and adds the function to the group
// with conf as its FunctionConfiguration.
func (c *cloudProc) addFunction(t *testing.T, group, arn, code string, conf map[string]any) {
	t.Helper()
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	runOK(t, bin.ggcloud, "--data", c.data, "function", "put-code", "--arn", arn, "--file", code)
	runOK(t, bin.ggcloud, "--data", c.data, "function", "add", group, "--arn", arn, "--config", writeTemp(t, "fn.json", string(b)))
}

func (c *cloudProc) addSubscription(t *testing.T, group, id, source, subject, target string) {
	t.Helper()
	runOK(t, bin.ggcloud, "--data", c.data, "group", "add-subscription", group,
		"--id", id, "--source", source, "--subject", subject, "--target", target)
}

// goFunction is the FunctionConfiguration of a gofn function.
func goFunction(pinned bool, timeout int, vars map[string]any, resources ...string) map[string]any {
	env := map[string]any{"Variables": vars}
	var policies []any
	for _, r := range resources {
		policies = append(policies, map[string]any{"ResourceId": r, "Permission": "ro"})
	}
	if policies != nil {
		env["ResourceAccessPolicies"] = policies
	}
	return map[string]any{"Executable": "gofn", "Pinned": pinned, "Timeout": timeout, "MemorySize": 16384,
		"EncodingType": "binary", "Environment": env}
}

// functionPID is the process ID the core logged for arn's latest process.
func functionPID(t *testing.T, log, arn string) int {
	t.Helper()
	m := regexp.MustCompile(`function process started"[^\n]* function=`+regexp.QuoteMeta(arn)+` pid=(\d+)`).FindAllStringSubmatch(log, -1)
	if len(m) == 0 {
		t.Fatalf("no process of %s in the core log", arn)
	}
	pid, _ := strconv.Atoi(m[len(m)-1][1])
	return pid
}

// nextOn returns the next message dev gets on topic, skipping others.
func nextOn(t *testing.T, dev *mqtttest.Client, topic string) mqtttest.Message {
	t.Helper()
	for {
		if m := dev.Next(t); m.Topic == topic {
			return m
		}
	}
}

// TestFunctionsThroughDeployment: the real path from ggcloud to a
// function. A secret (`ggcloud secret create`, `group add-secret`) and
// functions' code (`function put-code`, `function add` with a
// ResourceAccessPolicies entry) are deployed together; a device's message
// reaches, through routes, a pinned static Go function (core/ipc/ggfunc)
// and a pinned Node.js function (the unmodified npm SDK), which read the
// secret with GetSecretValue and publish it (Go: the value and its
// SHA-256; Node.js: its SHA-256, as the SDK logs what it publishes, and a
// function's output goes to the core's log) to another device; an
// unaffiliated function of the same deployment is refused with v1's 401
// error. An invocation that runs past its function's Timeout is failed to
// its invoker with v1's Unhandled error, and the worker is killed,
// counted and restarted. The secret is in no file and no log. It logs
// the figures of the report: deployment time, latencies, memory.
func TestFunctionsThroughDeployment(t *testing.T) {
	t.Parallel()
	nodeCode := tarGz(t, nodeFunctionCode(t), nil)
	goCode := goFunctionCode(t)
	f, c, group := deployFleet(t, "dev1", "dev2")
	traversable(t, f.dir)
	f.setConfig(t, "coreThing.ggDaemonPort", freePort(t))
	value := newSecretValue(t, "fn")
	runOK(t, bin.ggcloud, "--data", c.data, "secret", "create", "db-password", "--from-file", writeTemp(t, "value", value))
	runOK(t, bin.ggcloud, "--data", c.data, "group", "add-secret", group, "--resource-id", "db", "--secret", "db-password")

	secretVars := func(name string) map[string]any {
		return map[string]any{"ROLE": "secret", "FUNCTION": name, "SECRET_ID": "db-password", "REPLY_TOPIC": "fn/secret/" + name}
	}
	c.addFunction(t, group, goReaderARN, goCode, goFunction(true, 5, secretVars("go"), "db"))
	c.addFunction(t, group, intruderARN, goCode, goFunction(false, 5, secretVars("intruder")))
	nodeConf := nodeFunction(nodeReaderARN, "secret", true)["FunctionConfiguration"].(map[string]any)
	nodeConf["Environment"] = map[string]any{"Variables": map[string]any{"ROLE": "secret", "SECRET_ID": "db-password", "REPLY_TOPIC": "fn/secret/node"},
		"ResourceAccessPolicies": []any{map[string]any{"ResourceId": "db", "Permission": "ro"}}}
	c.addFunction(t, group, nodeReaderARN, nodeCode, nodeConf)
	c.addFunction(t, group, sleeperARN, goCode, goFunction(true, 1, map[string]any{"ROLE": "sleep"}))
	c.addFunction(t, group, invokerARN, goCode, goFunction(false, 10,
		map[string]any{"ROLE": "invoke", "FUNCTION": "invoker", "TARGET": sleeperARN, "REPLY_TOPIC": "fn/timeout/invoker"}))
	c.addFunction(t, group, goEchoARN, goCode, goFunction(false, 5, map[string]any{"ROLE": "echo", "REPLY_TOPIC": "fn/echo/go"}))
	c.addFunction(t, group, nodeEchoARN, nodeCode, nodeFunction(nodeEchoARN, "echo", false)["FunctionConfiguration"].(map[string]any))
	for _, fn := range []string{goReaderARN, nodeReaderARN, intruderARN} {
		c.addSubscription(t, group, "get-"+strings.Split(fn, ":")[6], "dev1", "secret/get/#", fn)
		c.addSubscription(t, group, "put-"+strings.Split(fn, ":")[6], fn, "fn/secret/#", "dev2")
	}
	c.addSubscription(t, group, "timeout-in", "dev1", "timeout/#", invokerARN)
	c.addSubscription(t, group, "timeout-out", invokerARN, "fn/timeout/#", "dev2")
	c.addSubscription(t, group, "echo-go-in", "dev1", "echo/go", goEchoARN)
	c.addSubscription(t, group, "echo-go-out", goEchoARN, "fn/echo/go", "dev2")
	c.addSubscription(t, group, "echo-node-in", "dev1", "echo/node", nodeEchoARN)
	c.addSubscription(t, group, "echo-node-out", nodeEchoARN, "fn/reply/#", "dev2")

	core := startCore(t, f)
	start := time.Now()
	id := c.deploy(t, group)
	if s, out := c.waitStatus(t, group, id); s != "Success" {
		t.Fatalf("deployment %s: %s\ncore log:\n%s", id, out, core.log)
	}
	t.Logf("deployment with a secret and 7 functions' code (2 Node.js with the npm SDK, 5 static Go): %v", time.Since(start).Round(time.Millisecond))
	dev1, dev2 := f.connect5(t, "dev1"), f.connect5(t, "dev2")
	dev2.MustSubscribe(t, 1, "fn/#")

	t.Run("affiliated functions read the secret, an unaffiliated one is refused", func(t *testing.T) {
		dev1.MustPublish(t, "secret/get/1", `{}`, 1, false)
		got := map[string]map[string]any{}
		for len(got) < 3 {
			m := dev2.Next(t)
			if !strings.HasPrefix(m.Topic, "fn/secret/") {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(m.Payload), &v); err != nil {
				t.Fatalf("%s: %v", m, err)
			}
			got[strings.TrimPrefix(m.Topic, "fn/secret/")] = v
		}
		sum := sha256.Sum256([]byte(value))
		if g := got["go"]; g["value"] != value || g["sha256"] != hex.EncodeToString(sum[:]) {
			t.Errorf("the Go function published %v; want the secret's value", g)
		}
		if g := got["node"]; g["sha256"] != hex.EncodeToString(sum[:]) {
			t.Errorf("the Node.js function published %v; want the secret's SHA-256", g)
		}
		refusal, _ := got["intruder"]["error"].(map[string]any)
		if refusal["Status"] != 401.0 || !strings.Contains(fmt.Sprint(refusal["Message"]), "not authorized") || got["intruder"]["value"] != nil {
			t.Errorf("the unaffiliated function published %v; want v1's {\"Status\":401,\"Message\":...}", got["intruder"])
		}
	})

	t.Run("an invocation past its Timeout fails with Unhandled and its worker is killed and restarted", func(t *testing.T) {
		started := regexp.MustCompile(`function process started"[^\n]* function=` + regexp.QuoteMeta(sleeperARN) + ` `)
		before := len(started.FindAllString(core.log.String(), -1))
		start := time.Now()
		dev1.MustPublish(t, "timeout/1", `{"n":1}`, 1, false)
		m := nextOn(t, dev2, "fn/timeout/invoker")
		var got struct {
			Payload       map[string]string `json:"payload"`
			FunctionError string            `json:"functionError"`
		}
		if err := json.Unmarshal([]byte(m.Payload), &got); err != nil || got.FunctionError != "Unhandled" ||
			got.Payload["errorMessage"] != "Task timed out after 1.00 seconds" {
			t.Fatalf("the invoker got %s; want Unhandled with the timeout message", m.Payload)
		}
		t.Logf("device → invoker → sleeper (Timeout 1 s) → Unhandled → device: %v", time.Since(start).Round(time.Millisecond))
		testtool.Eventually(t, "the sleeper killed, counted and restarted", func() bool {
			log := core.log.String()
			return regexp.MustCompile(`function process killed: an invocation ran past its Timeout"[^\n]* function=`+
				regexp.QuoteMeta(sleeperARN)+` [^\n]*timeouts=1`).MatchString(log) &&
				len(started.FindAllString(log, -1)) > before
		})
	})

	t.Run("latency and memory", func(t *testing.T) {
		rounds := 1000
		if testing.Short() {
			rounds = 50
		}
		for _, fn := range []struct{ name, in, out string }{{"static Go", "echo/go", "fn/echo/go"}, {"Node.js", "echo/node", "fn/reply/dev2"}} {
			lat := make([]time.Duration, 0, rounds)
			for i := range rounds + 1 {
				start := time.Now()
				dev1.MustPublish(t, fn.in, fmt.Sprintf(`{"i":%d}`, i), 1, false)
				nextOn(t, dev2, fn.out)
				lat = append(lat, time.Since(start))
			}
			cold, warm := lat[0], lat[1:]
			slices.Sort(warm)
			t.Logf("device → on-demand %s function → device: cold %v; warm median %v, p99 %v over %d", fn.name,
				cold.Round(time.Microsecond), warm[len(warm)/2].Round(time.Microsecond), warm[len(warm)*99/100].Round(time.Microsecond), rounds)
			// Throughput with a window of 8 invocations in flight (an
			// on-demand function gets a process per waiting item, up to 25).
			const window = 8
			start := time.Now()
			for sent, got := 0, 0; got < rounds; {
				if sent < rounds && sent-got < window {
					dev1.MustPublish(t, fn.in, fmt.Sprintf(`{"i":%d}`, sent), 1, false)
					sent++
					continue
				}
				nextOn(t, dev2, fn.out)
				got++
			}
			t.Logf("device → %s function → device throughput: %.0f invocations/s (%d, %d in flight, QoS 1)",
				fn.name, float64(rounds)/time.Since(start).Seconds(), rounds, window)
		}
		for _, fn := range []struct{ name, arn string }{{"static Go", goReaderARN}, {"Node.js", nodeReaderARN}} {
			t.Logf("idle pinned %s function: %s", fn.name, residentMemory(functionPID(t, core.log.String(), fn.arn)))
		}
	})

	assertNowhere(t, value, filepath.Join(f.dir, "write"), map[string]string{"core": core.log.String(), "ggcloud": c.log.String()})
}
