package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/functions"
	"github.com/ggcore/ggcore/core/ipc"
	"github.com/ggcore/ggcore/core/ipc/ggfunc"
)

const echoARN = "arn:aws:lambda:us-east-1:123456789012:function:echo:1"

// published hands the function's publishes to the benchmark.
type published chan string

func (p published) PublishFrom(_, topic string, _ []byte) error {
	p <- topic
	return nil
}

// oneSecret is a SecretReader with one secret, as core/secrets serves it
// after a deployment (an in-memory lookup).
type oneSecret struct{ value string }

func (s oneSecret) ReadSecret(_, id, _ string) (ipc.Secret, error) {
	return ipc.Secret{ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + id + "-AbCdEf", Name: id, VersionID: "v1",
		VersionStages: []string{"AWSCURRENT"}, SecretString: &s.value, CreatedDate: time.Now()}, nil
}

// BenchmarkFunction measures ggcore's local function path without MQTT:
// the v1 IPC server (core/ipc) on 127.0.0.1 and the supervisor
// (core/functions) running tests/gofn, a static Go function on the
// core/ipc/ggfunc client, pinned. invoke is one invocation end to end: a
// routed message queued for the function (what the broker does for a
// device's message), fetched by the function's long-poll, its reply
// published through GGRouter. GetSecretValue is a function reading a
// secret (POST, then GET of the result), as the SDKs do.
//
//	go test -run NONE -bench Function ./tests/bench/
func BenchmarkFunction(b *testing.B) {
	code := b.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(code, "gofn"), "github.com/ggcore/ggcore/tests/gofn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build tests/gofn: %v\n%s", err, out)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pub := make(published, 16)
	var sup *functions.Supervisor
	srv := ipc.New(ipc.Options{Logger: log, Publisher: pub, Secrets: oneSecret{"s3cret"},
		OnWork: func(arn string, n int) { sup.Work(arn, n) }, OnTimeout: func(_, tok string) { sup.Kill(tok) }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	sup = functions.New(functions.Options{Logger: log, Tokens: srv, Port: ln.Addr().(*net.TCPAddr).Port})
	b.Cleanup(sup.Close)
	fn := config.Function{FunctionArn: echoARN, Executable: "gofn", Pinned: true, Timeout: 10 * time.Second,
		EncodingType: "binary", IsolationMode: config.IsolationNoContainer,
		RunAs:     &config.RunAs{Uid: int64(os.Getuid()), Gid: int64(os.Getgid())}, // the code is in a private temp dir
		Variables: map[string]string{"ROLE": "echo", "REPLY_TOPIC": "out"}}
	srv.SetFunctions([]ipc.Function{{ARN: echoARN, Timeout: fn.Timeout}})
	sup.Set([]functions.Spec{{Function: fn, CodeDir: code}})

	invoke := func(b *testing.B, i int) {
		srv.Deliver("dev", echoARN, "in", []byte(fmt.Sprintf(`{"i":%d}`, i)))
		select {
		case <-pub:
		case <-time.After(30 * time.Second):
			b.Fatal("no reply from the function within 30 s")
		}
	}
	invoke(b, 0) // the process is up

	b.Run("invoke", func(b *testing.B) {
		i := 0
		for b.Loop() {
			invoke(b, i)
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "invocations/s")
	})
	b.Run("GetSecretValue", func(b *testing.B) {
		c := &ggfunc.Client{ARN: echoARN, Token: srv.Issue(echoARN), BaseURL: "http://" + ln.Addr().String(),
			SecretsARN: ipc.SecretsARN, HTTP: &http.Client{}}
		for b.Loop() {
			if _, err := c.GetSecretValue(ctx, "db", ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}
