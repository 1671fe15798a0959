// Command gofn is a static Go local function for ggcore's tests and
// benchmarks, written with the core/ipc/ggfunc client (build it with
// CGO_ENABLED=0 and deploy it as FunctionConfiguration.Executable). Its
// environment Variables choose what its handler does with each
// invocation (a routed device message):
//
//	ROLE=secret   GetSecretValue(SECRET_ID) and publish, on REPLY_TOPIC,
//	              {"function","sha256"} plus "value" unless REVEAL=hash,
//	              or {"function","error":{"Status","Message"}} when refused
//	ROLE=echo     publish the payload on REPLY_TOPIC (latency probes)
//	ROLE=sleep    never answer (a handler that runs past its Timeout)
//	ROLE=invoke   invoke TARGET (RequestResponse) with the payload and
//	              publish {"payload","functionError"} on REPLY_TOPIC
//
// FUNCTION names the function in what it publishes (default: its ARN).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/ggcore/ggcore/core/ipc/ggfunc"
)

func main() {
	log.SetFlags(0)
	c, err := ggfunc.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	name := os.Getenv("FUNCTION")
	if name == "" {
		name = c.ARN
	}
	h, err := handler(c, os.Getenv("ROLE"), name, os.Getenv("REPLY_TOPIC"))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx, h); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// handler is the work of role.
func handler(c *ggfunc.Client, role, name, reply string) (ggfunc.Handler, error) {
	publish := func(ctx context.Context, v any) ([]byte, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return nil, c.Publish(ctx, reply, b)
	}
	switch role {
	case "secret":
		id, reveal := os.Getenv("SECRET_ID"), os.Getenv("REVEAL") != "hash"
		return func(ctx context.Context, _ ggfunc.Invocation) ([]byte, error) {
			s, err := c.GetSecretValue(ctx, id, "")
			var refused *ggfunc.SecretError
			switch {
			case errors.As(err, &refused):
				return publish(ctx, map[string]any{"function": name, "error": refused})
			case err != nil:
				return nil, err
			}
			value := s.SecretBinary
			if s.SecretString != nil {
				value = []byte(*s.SecretString)
			}
			sum := sha256.Sum256(value)
			out := map[string]any{"function": name, "sha256": hex.EncodeToString(sum[:])}
			if reveal {
				out["value"] = string(value)
			}
			return publish(ctx, out)
		}, nil
	case "echo":
		return func(ctx context.Context, inv ggfunc.Invocation) ([]byte, error) {
			return nil, c.Publish(ctx, reply, inv.Payload)
		}, nil
	case "sleep":
		return func(ctx context.Context, _ ggfunc.Invocation) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, nil
	case "invoke":
		target := os.Getenv("TARGET")
		return func(ctx context.Context, inv ggfunc.Invocation) ([]byte, error) {
			out, funcErr, err := c.Invoke(ctx, target, inv.Payload)
			if err != nil {
				return nil, err
			}
			return publish(ctx, map[string]any{"function": name, "payload": json.RawMessage(orNull(out)), "functionError": funcErr})
		}, nil
	}
	return nil, fmt.Errorf("gofn: ROLE %q: want secret, echo, sleep or invoke", role)
}

// orNull is b, or JSON null when b is not JSON.
func orNull(b []byte) []byte {
	if !json.Valid(b) {
		return []byte("null")
	}
	return b
}
