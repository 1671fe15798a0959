package ggfunc_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/ipc"
	"github.com/ggcore/ggcore/core/ipc/ggfunc"
)

const (
	fnA = "arn:aws:lambda:us-east-1:123456789012:function:a:1"
	fnB = "arn:aws:lambda:us-east-1:123456789012:function:b:1"
)

type pub struct {
	mu  sync.Mutex
	got []string
}

func (p *pub) PublishFrom(src, topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, src+" "+topic+" "+string(payload))
	return nil
}

type secrets struct{}

func (secrets) ReadSecret(fn, id, stage string) (ipc.Secret, error) {
	if fn != fnB {
		return ipc.Secret{}, ipc.ErrSecretDenied
	}
	v := "pw"
	return ipc.Secret{ARN: "arn:x", Name: id, VersionID: "1", VersionStages: []string{"AWSCURRENT"}, SecretString: &v,
		CreatedDate: time.UnixMilli(42)}, nil
}

// A Go function (B) is invoked by A through the real IPC server, reads
// its secret and publishes; A is refused B's secret.
func TestClientAgainstServer(t *testing.T) {
	p := &pub{}
	s := ipc.New(ipc.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Publisher: p, Secrets: secrets{}})
	s.SetFunctions([]ipc.Function{{ARN: fnA, Timeout: 5 * time.Second}, {ARN: fnB, Timeout: 5 * time.Second}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	a := &ggfunc.Client{ARN: fnA, Token: s.Issue(fnA), BaseURL: base, SecretsARN: ipc.SecretsARN, HTTP: &http.Client{}}
	b := &ggfunc.Client{ARN: fnB, Token: s.Issue(fnB), BaseURL: base, SecretsARN: ipc.SecretsARN, HTTP: &http.Client{}}

	go func() {
		_ = b.Run(ctx, func(ctx context.Context, inv ggfunc.Invocation) ([]byte, error) {
			sec, err := b.GetSecretValue(ctx, "db", "")
			if err != nil {
				return nil, err
			}
			return nil, b.Publish(ctx, "out/b", append(inv.Payload, []byte(" "+*sec.SecretString)...))
		})
	}()
	s.Deliver("cloud", fnB, "in/b", []byte("hi"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.got)
		p.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("function B published nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if want := fnB + " out/b hi pw"; p.got[0] != want {
		t.Fatalf("published %q, want %q", p.got[0], want)
	}
	_, err = a.GetSecretValue(ctx, "db", "")
	var se *ggfunc.SecretError
	if !errors.As(err, &se) || se.Status != 401 {
		t.Fatalf("A reading B's secret: %v, want a 401 SecretError", err)
	}

	// A invokes B (RequestResponse): the call returns once B's handler
	// has run (and published).
	out, funcErr, err := a.Invoke(ctx, fnB, []byte("x"))
	if err != nil || funcErr != "" || len(out) != 0 {
		t.Fatalf("A invoking B: %q %q %v; want B's empty result", out, funcErr, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if want := fnB + " out/b x pw"; len(p.got) != 2 || p.got[1] != want {
		t.Fatalf("published %q, want B's second message %q", p.got, want)
	}
}
