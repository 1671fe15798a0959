// Package ipc serves Greengrass v1's local function IPC: plain HTTP on
// 127.0.0.1 under /2016-11-01/functions/{functionArn}, through which
// local functions publish (GGRouter), read secrets (GGSecretManager),
// invoke each other, and fetch their work by long-poll.
//
// Every request carries the calling process's token in Authorization;
// the server maps it to the function it was issued to (Issue) and refuses
// anything else. The work queue is in memory, as v1's: routed messages
// are delivered at most once.
package ipc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// APIPrefix is the path prefix of the function API.
const APIPrefix = "/2016-11-01/functions/"

// System pseudo-function ARNs, as the SDKs read them from the environment.
const (
	RouterARN  = "arn:aws:lambda:::function:GGRouter"
	ShadowARN  = "arn:aws:lambda:::function:GGShadowService"
	SecretsARN = "arn:aws:lambda:::function:GGSecretManager:1"
)

// Header names of the v1 IPC.
const (
	invocationIDHdr   = "X-Amz-InvocationId"
	clientContextHdr  = "X-Amz-Client-Context"
	invocationTypeHdr = "X-Amz-Invocation-Type"
	functionErrorHdr  = "X-Amz-Function-Error"
)

// Limits of the server.
const (
	// MaxPayload bounds a request body (v1's message limit is 128 KiB;
	// invocations may carry more).
	MaxPayload = 1 << 20
	// DefaultMaxWorkItems bounds each function's queue of work not yet
	// fetched (v1's runtime.maxWorkItemCount).
	DefaultMaxWorkItems = 1024
	// resultGrace is how long past its function's Timeout an invocation
	// may wait in the queue before its invoker gets an Unhandled error.
	resultGrace = 30 * time.Second
)

// Publisher takes messages that functions publish: they enter the
// subscription table with the function's ARN as Source.
type Publisher interface {
	PublishFrom(sourceARN, topic string, payload []byte) error
}

// Secret is one secret version, as GetSecretValue answers it.
type Secret struct {
	ARN, Name, VersionID string
	VersionStages        []string
	SecretString         *string
	SecretBinary         []byte
	CreatedDate          time.Time
}

// Errors a SecretReader returns (wrapped).
var (
	ErrSecretNotFound = errors.New("secret not found")
	ErrSecretDenied   = errors.New("secret not affiliated with the function")
)

// SecretReader reads a secret for a function: secretID is a name or an
// ARN; versionStage "" means AWSCURRENT.
type SecretReader interface {
	ReadSecret(functionARN, secretID, versionStage string) (Secret, error)
}

// Function is what the server knows of a local function.
type Function struct {
	ARN string
	// JSON: payloads routed to it must be JSON (EncodingType json).
	JSON bool
	// Timeout bounds one invocation.
	Timeout time.Duration
}

// Options configure a Server.
type Options struct {
	Logger    *slog.Logger
	Publisher Publisher
	Secrets   SecretReader // nil: every secret is not found
	// OnWork is called (without locks held) when work is queued for a
	// function, with the number of items waiting; the supervisor starts
	// on-demand workers from it.
	OnWork func(functionARN string, waiting int)
	// OnTimeout is called (without locks held) when an invocation a
	// worker fetched outlives its function's Timeout: the invoker has
	// been answered with an Unhandled error, and the worker process that
	// holds token must be killed (the supervisor does, and restarts a
	// pinned one).
	OnTimeout    func(functionARN, token string)
	MaxWorkItems int
}

// Server is the IPC server. Create it with New.
type Server struct {
	o   Options
	log *slog.Logger

	mu          sync.Mutex
	tokens      map[string]string // token -> function ARN
	functions   map[string]Function
	queues      map[string]*queue
	invocations map[string]*invocation

	invoked, published, refused, timedOut atomic.Int64
}

// queue is one function's work not yet fetched.
type queue struct {
	items  []*invocation
	notify chan struct{} // closed and replaced when an item is added
}

// invocation is one piece of work and, once posted, its result.
type invocation struct {
	id, target, caller string
	payload            []byte
	clientContext      string
	event              bool // no one collects the result
	deadline           time.Time
	// worker is the token of the process that fetched it; timer fails
	// it when the function's Timeout passes before a result.
	worker  string
	timer   *time.Timer
	done    chan struct{}
	result  []byte
	funcErr string
}

// New makes a server; Serve serves it.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxWorkItems <= 0 {
		o.MaxWorkItems = DefaultMaxWorkItems
	}
	return &Server{o: o, log: o.Logger, tokens: map[string]string{}, functions: map[string]Function{},
		queues: map[string]*queue{}, invocations: map[string]*invocation{}}
}

// SetFunctions replaces the set of local functions. Work queued for a
// function no longer listed is dropped.
func (s *Server) SetFunctions(fs []Function) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.functions = make(map[string]Function, len(fs))
	for _, f := range fs {
		s.functions[f.ARN] = f
	}
	for arn := range s.queues {
		if _, ok := s.functions[arn]; !ok {
			delete(s.queues, arn)
		}
	}
}

// Issue makes a fresh token for a process of the function.
func (s *Server) Issue(functionARN string) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	s.mu.Lock()
	s.tokens[tok] = functionARN
	s.mu.Unlock()
	return tok
}

// Revoke forgets a token (its process ended).
func (s *Server) Revoke(token string) {
	s.mu.Lock()
	delete(s.tokens, token)
	s.mu.Unlock()
}

// Stats are the server's counters.
type Stats struct {
	Invoked, Published, Refused int64
	// TimedOut counts invocations failed because their function ran past
	// its Timeout.
	TimedOut int64
}

// Stats returns the counters since New.
func (s *Server) Stats() Stats {
	return Stats{Invoked: s.invoked.Load(), Published: s.published.Load(), Refused: s.refused.Load(),
		TimedOut: s.timedOut.Load()}
}

// Serve serves HTTP on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		t := time.NewTicker(resultGrace)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = hs.Close()
				return
			case now := <-t.C:
				s.expire(now)
			}
		}
	}()
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("ipc: serve: %w", err)
}

// Deliver queues a message routed to a function by the subscription
// table: an Event invocation whose client context carries the topic as
// custom.subject and the publisher as custom.source. A non-JSON payload
// for a JSON function is dropped (it would wedge v1's runtimes).
func (s *Server) Deliver(sourceARN, targetARN, topic string, payload []byte) {
	s.mu.Lock()
	f, ok := s.functions[targetARN]
	s.mu.Unlock()
	if !ok {
		s.log.Debug("message for an unknown function dropped", "function", targetARN, "topic", topic)
		return
	}
	if f.JSON && len(payload) > 0 && !json.Valid(payload) {
		s.log.Warn("message dropped: not JSON, and the function's EncodingType is json",
			"function", targetARN, "topic", topic, "source", sourceARN)
		return
	}
	cc, _ := json.Marshal(map[string]any{"custom": map[string]string{"subject": topic, "source": sourceARN}})
	if _, err := s.enqueue(sourceARN, targetARN, payload, base64.StdEncoding.EncodeToString(cc), true); err != nil {
		s.log.Warn("message for a function dropped", "function", targetARN, "topic", topic, "error", err)
	}
}

var errQueueFull = errors.New("work queue full")

// enqueue adds work for target and returns its invocation.
func (s *Server) enqueue(caller, target string, payload []byte, clientContext string, event bool) (*invocation, error) {
	s.mu.Lock()
	f, ok := s.functions[target]
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("function %s is not in this group", target)
	}
	q := s.queues[target]
	if q == nil {
		q = &queue{notify: make(chan struct{})}
		s.queues[target] = q
	}
	if len(q.items) >= s.o.MaxWorkItems {
		s.mu.Unlock()
		return nil, errQueueFull
	}
	inv := &invocation{id: newID(), target: target, caller: caller, payload: payload, clientContext: clientContext,
		event: event, deadline: time.Now().Add(f.Timeout + resultGrace), done: make(chan struct{})}
	q.items = append(q.items, inv)
	close(q.notify)
	q.notify = make(chan struct{})
	s.invocations[inv.id] = inv
	waiting := len(q.items)
	s.mu.Unlock()
	s.invoked.Add(1)
	if s.o.OnWork != nil {
		s.o.OnWork(target, waiting)
	}
	return inv, nil
}

// timeout fails inv, whose worker has run past the function's Timeout,
// with v1's Unhandled error, and has the worker killed.
func (s *Server) timeout(inv *invocation, after time.Duration) {
	msg := fmt.Sprintf("Task timed out after %.2f seconds", after.Seconds())
	if !s.complete(inv, errorBody(msg), "Unhandled") {
		return // the result came first
	}
	n := s.timedOut.Add(1)
	s.log.Warn("function invocation timed out; its worker is killed", "function", inv.target, "invocation", inv.id,
		"timeout", after, "timedOut", n)
	if s.o.OnTimeout != nil {
		s.o.OnTimeout(inv.target, inv.worker)
	}
}

// complete records inv's result and wakes its invoker.
func (s *Server) complete(inv *invocation, result []byte, funcErr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.invocations[inv.id]; !ok {
		return false
	}
	select {
	case <-inv.done:
		return false
	default:
	}
	inv.result, inv.funcErr = result, funcErr
	close(inv.done)
	if inv.timer != nil {
		inv.timer.Stop()
	}
	if inv.event {
		delete(s.invocations, inv.id)
	}
	return true
}

// expire fails the invocations past their deadline (a worker died with
// them), so that nothing waits or is kept for ever.
func (s *Server) expire(now time.Time) {
	s.mu.Lock()
	var old []*invocation
	for _, inv := range s.invocations {
		if now.After(inv.deadline.Add(resultGrace)) {
			old = append(old, inv)
		}
	}
	s.mu.Unlock()
	for _, inv := range old {
		s.complete(inv, errorBody("function timed out"), "Unhandled")
		s.mu.Lock()
		delete(s.invocations, inv.id)
		s.mu.Unlock()
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ServeHTTP routes the v1 API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if p, err := pathUnescape(path); err == nil {
		path = p
	}
	caller, ok := s.authenticate(r)
	if !ok {
		s.refused.Add(1)
		s.log.Warn("ipc request refused: unknown token", "method", r.Method, "path", path, "remote", r.RemoteAddr)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	switch {
	case strings.HasPrefix(path, "/2016-11-01/cloudwatch/logs"):
		s.cloudwatchLogs(w, r, caller)
		return
	case !strings.HasPrefix(path, APIPrefix):
		http.NotFound(w, r)
		return
	}
	rest := strings.TrimPrefix(path, APIPrefix)
	switch {
	case strings.HasSuffix(rest, "/work"):
		arn := strings.TrimSuffix(rest, "/work")
		if arn != caller {
			s.refuse(w, caller, "work of another function", arn)
			return
		}
		switch r.Method {
		case http.MethodGet:
			s.getWork(w, r, arn, r.Header.Get("Authorization"))
		case http.MethodPost:
			s.postResult(w, r, arn)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	case strings.HasSuffix(rest, "/initialized"):
		if strings.TrimSuffix(rest, "/initialized") != caller {
			s.refuse(w, caller, "initialization of another function", rest)
			return
		}
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPost:
		s.postWork(w, r, caller, rest)
	case r.Method == http.MethodGet:
		s.getResult(w, r, caller, rest)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func pathUnescape(p string) (string, error) {
	if !strings.Contains(p, "%") {
		return p, nil
	}
	return url.PathUnescape(p)
}

func (s *Server) refuse(w http.ResponseWriter, caller, what, arn string) {
	s.refused.Add(1)
	s.log.Warn("ipc request refused: "+what, "function", caller, "asked", arn)
	http.Error(w, "Forbidden", http.StatusForbidden)
}

// authenticate maps the Authorization header to a function ARN.
func (s *Server) authenticate(r *http.Request) (string, bool) {
	tok := r.Header.Get("Authorization")
	if tok == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	arn, ok := s.tokens[tok]
	return arn, ok
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPayload))
	if err != nil {
		http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
		return nil, false
	}
	return body, true
}

// postWork is operation A: publish, a system call, or an invocation.
func (s *Server) postWork(w http.ResponseWriter, r *http.Request, caller, target string) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	cc := r.Header.Get(clientContextHdr)
	switch target {
	case RouterARN:
		s.publish(w, caller, cc, body)
		return
	case SecretsARN:
		inv := s.immediate(caller, target, s.getSecretValue(caller, body))
		w.Header().Set(invocationIDHdr, inv.id)
		w.WriteHeader(http.StatusAccepted)
		return
	case ShadowARN:
		res, _ := json.Marshal(map[string]any{"code": 503, "message": "the local shadow service is not available in this core",
			"timestamp": time.Now().Unix()})
		inv := s.immediate(caller, target, res)
		w.Header().Set(invocationIDHdr, inv.id)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	event := r.Header.Get(invocationTypeHdr) == "Event"
	inv, err := s.enqueue(caller, target, body, cc, event)
	switch {
	case errors.Is(err, errQueueFull):
		http.Error(w, "Too Many Requests: work queue full", http.StatusTooManyRequests)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set(invocationIDHdr, inv.id)
	w.WriteHeader(http.StatusAccepted)
}

// immediate records a completed RequestResponse invocation of a system
// function, for the caller to collect.
func (s *Server) immediate(caller, target string, result []byte) *invocation {
	inv := &invocation{id: newID(), target: target, caller: caller, done: make(chan struct{}),
		result: result, deadline: time.Now().Add(resultGrace)}
	close(inv.done)
	s.mu.Lock()
	s.invocations[inv.id] = inv
	s.mu.Unlock()
	return inv
}

// publish hands a function's message to the router as the function.
func (s *Server) publish(w http.ResponseWriter, caller, cc string, payload []byte) {
	var ctx struct {
		Custom struct {
			Subject string `json:"subject"`
		} `json:"custom"`
	}
	raw, err := base64.StdEncoding.DecodeString(cc)
	if err == nil {
		err = json.Unmarshal(raw, &ctx)
	}
	if err != nil || ctx.Custom.Subject == "" {
		http.Error(w, "Bad Request: client context has no custom.subject (the topic)", http.StatusBadRequest)
		return
	}
	if s.o.Publisher == nil {
		http.Error(w, "no router", http.StatusServiceUnavailable)
		return
	}
	if err := s.o.Publisher.PublishFrom(caller, ctx.Custom.Subject, payload); err != nil {
		s.log.Warn("function publish refused", "function", caller, "topic", ctx.Custom.Subject, "error", err)
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.published.Add(1)
	w.Header().Set(invocationIDHdr, newID())
	w.WriteHeader(http.StatusAccepted)
}

// getWork is operation B: a long-poll that answers only with work. The
// function's Timeout starts when the worker (token) takes the work.
func (s *Server) getWork(w http.ResponseWriter, r *http.Request, arn, token string) {
	for {
		s.mu.Lock()
		q := s.queues[arn]
		if q == nil {
			if _, known := s.functions[arn]; !known {
				s.mu.Unlock()
				http.Error(w, "function not in this group", http.StatusNotFound)
				return
			}
			q = &queue{notify: make(chan struct{})}
			s.queues[arn] = q
		}
		if len(q.items) > 0 {
			inv := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			timeout := s.functions[arn].Timeout
			if time.Now().After(inv.deadline) {
				s.mu.Unlock()
				s.complete(inv, errorBody("invocation expired in the queue"), "Unhandled")
				continue
			}
			inv.worker = token
			if timeout > 0 {
				inv.deadline = time.Now().Add(timeout + resultGrace)
				inv.timer = time.AfterFunc(timeout, func() { s.timeout(inv, timeout) })
			}
			s.mu.Unlock()
			w.Header().Set(invocationIDHdr, inv.id)
			w.Header().Set(clientContextHdr, inv.clientContext)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(inv.payload)
			return
		}
		notify := q.notify
		s.mu.Unlock()
		select {
		case <-notify:
		case <-r.Context().Done():
			return
		}
	}
}

// postResult is operations C and D: a worker's result or handler error.
func (s *Server) postResult(w http.ResponseWriter, r *http.Request, arn string) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	id := r.Header.Get(invocationIDHdr)
	s.mu.Lock()
	inv := s.invocations[id]
	s.mu.Unlock()
	if inv == nil || inv.target != arn {
		http.Error(w, "unknown invocation", http.StatusNotFound)
		return
	}
	funcErr := r.Header.Get(functionErrorHdr)
	if funcErr != "" {
		s.log.Info("function returned an error", "function", arn, "invocation", id, "error", truncate(body, 512))
	}
	s.complete(inv, body, funcErr)
	w.WriteHeader(http.StatusOK)
}

// getResult is operation E: blocks until the invocation's result exists.
func (s *Server) getResult(w http.ResponseWriter, r *http.Request, caller, target string) {
	id := r.Header.Get(invocationIDHdr)
	s.mu.Lock()
	inv := s.invocations[id]
	var wait time.Duration
	if inv != nil {
		wait = time.Until(inv.deadline)
	}
	s.mu.Unlock()
	if inv == nil || inv.caller != caller || inv.target != target || inv.event {
		http.Error(w, "unknown invocation", http.StatusNotFound)
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-inv.done:
	case <-t.C:
		s.complete(inv, errorBody("function timed out"), "Unhandled")
	case <-r.Context().Done():
		return
	}
	s.mu.Lock()
	delete(s.invocations, id)
	s.mu.Unlock()
	// Always present, empty on success: the Python SDK compares it to "".
	w.Header()[functionErrorHdr] = []string{inv.funcErr}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.result)
}

// cloudwatchLogs accepts the old Python runtime's log posts.
func (s *Server) cloudwatchLogs(w http.ResponseWriter, r *http.Request, caller string) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		LogEvents []struct {
			Message string `json:"message"`
		} `json:"logEvents"`
	}
	if json.Unmarshal(body, &req) != nil || len(req.LogEvents) == 0 {
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return
	}
	for _, e := range req.LogEvents {
		s.log.Info("function log", "function", caller, "message", e.Message)
	}
	w.WriteHeader(http.StatusOK)
}

func errorBody(msg string) []byte {
	b, _ := json.Marshal(map[string]string{"errorMessage": msg})
	return b
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
