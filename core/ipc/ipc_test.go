package ipc

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	fnA = "arn:aws:lambda:us-east-1:123456789012:function:a:1"
	fnB = "arn:aws:lambda:us-east-1:123456789012:function:b:1"
)

type fakePublisher struct {
	mu   sync.Mutex
	msgs []string
}

func (p *fakePublisher) PublishFrom(src, topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, src+" "+topic+" "+string(payload))
	return nil
}

type fakeSecrets struct{}

func (fakeSecrets) ReadSecret(fn, id, stage string) (Secret, error) {
	if id != "db" {
		return Secret{}, fmt.Errorf("%w: %s", ErrSecretNotFound, id)
	}
	if fn != fnA {
		return Secret{}, fmt.Errorf("%w: %s", ErrSecretDenied, id)
	}
	v := "s3cret"
	return Secret{ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf", Name: "db", VersionID: "v1",
		VersionStages: []string{"AWSCURRENT"}, SecretString: &v, CreatedDate: time.UnixMilli(1580414897159)}, nil
}

// start serves a server with functions A and B and returns its base URL
// and a token of each.
func start(t *testing.T, pub Publisher) (*Server, string, string, string) {
	t.Helper()
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Publisher: pub, Secrets: fakeSecrets{}})
	s.SetFunctions([]Function{{ARN: fnA, Timeout: 3 * time.Second}, {ARN: fnB, Timeout: 3 * time.Second}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, "http://" + ln.Addr().String(), s.Issue(fnA), s.Issue(fnB)
}

func call(t *testing.T, method, url, token string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestTokenRefused(t *testing.T) {
	_, base, tokA, _ := start(t, &fakePublisher{})
	for _, tc := range []struct {
		name, method, path, token string
		want                      int
	}{
		{"no token", "POST", APIPrefix + RouterARN, "", 401},
		{"forged token", "POST", APIPrefix + RouterARN, "0123456789abcdef", 401},
		{"forged token on work", "GET", APIPrefix + fnA + "/work", "Basic forged", 401},
		{"another function's work", "GET", APIPrefix + fnB + "/work", tokA, 403},
		{"another function's result post", "POST", APIPrefix + fnB + "/work", tokA, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := call(t, tc.method, base+tc.path, tc.token, nil, "x")
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			}
		})
	}
}

func TestInvokeLongPoll(t *testing.T) {
	_, base, tokA, tokB := start(t, &fakePublisher{})
	type work struct {
		id, cc, body string
	}
	got := make(chan work, 1)
	go func() { // B's worker: blocks until there is work
		res, body := call(t, "GET", base+APIPrefix+fnB+"/work", tokB, nil, "")
		got <- work{res.Header.Get("X-Amz-InvocationId"), res.Header.Get("X-Amz-Client-Context"), body}
	}()
	select {
	case w := <-got:
		t.Fatalf("get-work answered without work: %+v", w)
	case <-time.After(200 * time.Millisecond):
	}
	res, _ := call(t, "POST", base+APIPrefix+fnB, tokA, map[string]string{"X-Amz-Client-Context": "e30="}, `{"n":1}`)
	id := res.Header.Get("X-Amz-InvocationId")
	if res.StatusCode != 202 || id == "" {
		t.Fatalf("post work: %d id %q", res.StatusCode, id)
	}
	var w work
	select {
	case w = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("worker got no work")
	}
	if w.id != id || w.body != `{"n":1}` || w.cc != "e30=" {
		t.Fatalf("work %+v, want id %s", w, id)
	}
	if res, _ := call(t, "POST", base+APIPrefix+fnB+"/work", tokB, map[string]string{"X-Amz-InvocationId": id}, `"ok"`); res.StatusCode != 200 {
		t.Fatalf("post result: %d", res.StatusCode)
	}
	res, body := call(t, "GET", base+APIPrefix+fnB, tokA, map[string]string{"X-Amz-InvocationId": id}, "")
	if res.StatusCode != 200 || body != `"ok"` {
		t.Fatalf("result %d %q", res.StatusCode, body)
	}
	if v, ok := res.Header["X-Amz-Function-Error"]; !ok || len(v) != 1 || v[0] != "" {
		t.Fatalf("X-Amz-Function-Error = %q, %v: want present and empty", v, ok)
	}
	// Only the invoker collects it, once.
	if res, _ := call(t, "GET", base+APIPrefix+fnB, tokA, map[string]string{"X-Amz-InvocationId": id}, ""); res.StatusCode != 404 {
		t.Fatalf("second get-result: %d, want 404", res.StatusCode)
	}
}

func TestPublishAsCaller(t *testing.T) {
	pub := &fakePublisher{}
	_, base, tokA, _ := start(t, pub)
	cc := base64.StdEncoding.EncodeToString([]byte(`{"custom":{"source":"` + fnB + `","subject":"t/1","queueFullPolicy":""}}`))
	res, _ := call(t, "POST", base+APIPrefix+RouterARN, tokA,
		map[string]string{"X-Amz-Client-Context": cc, "X-Amz-Invocation-Type": "Event"}, "hello")
	if res.StatusCode != 202 {
		t.Fatalf("publish: %d", res.StatusCode)
	}
	// The claimed source in the client context is ignored: the token decides.
	if want := fnA + " t/1 hello"; len(pub.msgs) != 1 || pub.msgs[0] != want {
		t.Fatalf("published %q, want %q", pub.msgs, want)
	}
}

func TestGetSecretValue(t *testing.T) {
	_, base, tokA, tokB := start(t, &fakePublisher{})
	for _, tc := range []struct {
		name, token, req, want string
	}{
		{"affiliated", tokA, `{"SecretId":"db"}`,
			`{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf","Name":"db","VersionId":"v1","SecretBinary":null,"SecretString":"s3cret","VersionStages":["AWSCURRENT"],"CreatedDate":1580414897159}`},
		{"not affiliated", tokB, `{"SecretId":"db"}`, `{"Status":401,"Message":"Function ` + fnB + ` is not authorized to read secret db"}`},
		{"unknown", tokA, `{"SecretId":"nope"}`, `{"Status":404,"Message":"Secret not found: nope"}`},
		{"no SecretId", tokA, `{}`, `{"Status":400,"Message":"SecretId absent in the request"}`},
		{"not JSON", tokA, `x`, `{"Status":400,"Message":"Unable to parse request"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := call(t, "POST", base+APIPrefix+SecretsARN, tc.token, nil, tc.req)
			id := res.Header.Get("X-Amz-InvocationId")
			res, body := call(t, "GET", base+APIPrefix+SecretsARN, tc.token, map[string]string{"X-Amz-InvocationId": id}, "")
			if res.StatusCode != 200 || body != tc.want {
				t.Fatalf("got %d %s\nwant %s", res.StatusCode, body, tc.want)
			}
		})
	}
}

func TestDeliverDropsNonJSON(t *testing.T) {
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.SetFunctions([]Function{{ARN: fnA, JSON: true, Timeout: time.Second}})
	var waiting []int
	s.o.OnWork = func(_ string, n int) { waiting = append(waiting, n) }
	s.Deliver("cloud", fnA, "t", []byte("not json"))
	s.Deliver("cloud", fnA, "t", []byte(`{"ok":true}`))
	if len(waiting) != 1 || !bytes.Equal(s.queues[fnA].items[0].payload, []byte(`{"ok":true}`)) {
		t.Fatalf("queued %v", waiting)
	}
}

// An invocation whose worker runs past the function's Timeout is failed
// to its invoker with v1's Unhandled error, counted, and the worker that
// took it is named for killing; its late result changes nothing.
func TestInvocationTimeout(t *testing.T) {
	killed := make(chan string, 1)
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnTimeout: func(arn, token string) { killed <- arn + " " + token }})
	s.SetFunctions([]Function{{ARN: fnA, Timeout: 3 * time.Second}, {ARN: fnB, Timeout: 300 * time.Millisecond}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	base, tokA, tokB := "http://"+ln.Addr().String(), s.Issue(fnA), s.Issue(fnB)

	res, _ := call(t, "POST", base+APIPrefix+fnB, tokA, nil, `{}`)
	id := res.Header.Get("X-Amz-InvocationId")
	res, _ = call(t, "GET", base+APIPrefix+fnB+"/work", tokB, nil, "")
	if res.Header.Get("X-Amz-InvocationId") != id {
		t.Fatalf("worker got %q, want %s", res.Header.Get("X-Amz-InvocationId"), id)
	}
	start := time.Now()
	res, body := call(t, "GET", base+APIPrefix+fnB, tokA, map[string]string{"X-Amz-InvocationId": id}, "")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the invoker waited %v for a 300 ms Timeout", d)
	}
	if res.StatusCode != 200 || res.Header.Get("X-Amz-Function-Error") != "Unhandled" ||
		body != `{"errorMessage":"Task timed out after 0.30 seconds"}` {
		t.Fatalf("result %d %q %s; want 200, Unhandled and the timeout message", res.StatusCode, res.Header.Get("X-Amz-Function-Error"), body)
	}
	select {
	case k := <-killed:
		if k != fnB+" "+tokB {
			t.Fatalf("OnTimeout(%s); want B's worker", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnTimeout not called")
	}
	if n := s.Stats().TimedOut; n != 1 {
		t.Fatalf("TimedOut = %d, want 1", n)
	}
	// The late result is not an error for the worker, and not delivered.
	if res, _ := call(t, "POST", base+APIPrefix+fnB+"/work", tokB, map[string]string{"X-Amz-InvocationId": id}, `"late"`); res.StatusCode/100 == 5 {
		t.Fatalf("late result: %d", res.StatusCode)
	}
	if n := s.Stats().TimedOut; n != 1 {
		t.Fatalf("TimedOut = %d after the late result, want 1", n)
	}

	// A result in time stops the clock.
	res, _ = call(t, "POST", base+APIPrefix+fnB, tokA, nil, `{}`)
	id = res.Header.Get("X-Amz-InvocationId")
	call(t, "GET", base+APIPrefix+fnB+"/work", tokB, nil, "")
	call(t, "POST", base+APIPrefix+fnB+"/work", tokB, map[string]string{"X-Amz-InvocationId": id}, `"ok"`)
	res, body = call(t, "GET", base+APIPrefix+fnB, tokA, map[string]string{"X-Amz-InvocationId": id}, "")
	if body != `"ok"` || res.Header.Get("X-Amz-Function-Error") != "" {
		t.Fatalf("result in time: %q %q", body, res.Header.Get("X-Amz-Function-Error"))
	}
	select {
	case k := <-killed:
		t.Fatalf("OnTimeout(%s) for an invocation answered in time", k)
	case <-time.After(500 * time.Millisecond):
	}
}
