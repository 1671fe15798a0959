// Package ggfunc is a small client of ggcore's v1 local function IPC for
// static Go executables run as local functions (FunctionRuntimeOverride
// "executable"): it reads the environment the core sets, publishes
// through the router, reads secrets, and runs the work loop that fetches
// invocations and posts their results. It has no dependencies beyond the
// standard library, so CGO_ENABLED=0 builds work.
package ggfunc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

const (
	apiPrefix = "/2016-11-01/functions/"
	routerARN = "arn:aws:lambda:::function:GGRouter"
)

// Client talks to the core's IPC as one function.
type Client struct {
	// ARN is the function's own ARN (MY_FUNCTION_ARN).
	ARN string
	// Token is the process's IPC token (AWS_CONTAINER_AUTHORIZATION_TOKEN).
	Token string
	// BaseURL is http://127.0.0.1:GG_DAEMON_PORT.
	BaseURL string
	// SecretsARN is the secret manager's pseudo-function.
	SecretsARN string
	// HTTP is the client used; it must have no timeout (get-work blocks).
	HTTP *http.Client
}

// FromEnv makes a client from the environment the core gives a function.
func FromEnv() (*Client, error) {
	c := &Client{ARN: os.Getenv("MY_FUNCTION_ARN"), Token: os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
		SecretsARN: os.Getenv("SECRETS_MANAGER_FUNCTION_ARN"), HTTP: &http.Client{}}
	port := os.Getenv("GG_DAEMON_PORT")
	if c.ARN == "" || c.Token == "" || port == "" {
		return nil, fmt.Errorf("ggfunc: MY_FUNCTION_ARN, AWS_CONTAINER_AUTHORIZATION_TOKEN and GG_DAEMON_PORT must be set (run by ggcore)")
	}
	if c.SecretsARN == "" {
		c.SecretsARN = "arn:aws:lambda:::function:GGSecretManager:1"
	}
	c.BaseURL = "http://127.0.0.1:" + port
	return c, nil
}

func (c *Client) do(ctx context.Context, method, path string, hdr map[string]string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("ggfunc: %w", err)
	}
	req.Header.Set("Authorization", c.Token)
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("ggfunc: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("ggfunc: %s %s: %w", method, path, err)
	}
	if res.StatusCode/100 != 2 {
		return nil, nil, fmt.Errorf("ggfunc: %s %s: HTTP %d: %s", method, path, res.StatusCode, bytes.TrimSpace(b))
	}
	return res, b, nil
}

// Publish sends payload on topic through the core's router, as this
// function: the subscription table decides where it goes.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	cc, _ := json.Marshal(map[string]any{"custom": map[string]string{"source": c.ARN, "subject": topic, "queueFullPolicy": ""}})
	_, _, err := c.do(ctx, http.MethodPost, apiPrefix+routerARN, map[string]string{
		"X-Amz-Client-Context":  base64.StdEncoding.EncodeToString(cc),
		"X-Amz-Invocation-Type": "Event",
	}, payload)
	return err
}

// Secret is GetSecretValue's answer.
type Secret struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	VersionID     string   `json:"VersionId"`
	SecretBinary  []byte   `json:"SecretBinary"`
	SecretString  *string  `json:"SecretString"`
	VersionStages []string `json:"VersionStages"`
	CreatedDate   int64    `json:"CreatedDate"` // epoch ms
}

// SecretError is the core's refusal of a GetSecretValue.
type SecretError struct {
	Status  int    `json:"Status"`
	Message string `json:"Message"`
}

func (e *SecretError) Error() string {
	return fmt.Sprintf("ggfunc: secret: %d %s", e.Status, e.Message)
}

// GetSecretValue reads a secret the group lets this function read;
// versionStage "" means AWSCURRENT. A refusal is a *SecretError.
func (c *Client) GetSecretValue(ctx context.Context, secretID, versionStage string) (Secret, error) {
	req := map[string]string{"SecretId": secretID}
	if versionStage != "" {
		req["VersionStage"] = versionStage
	}
	body, _ := json.Marshal(req)
	res, _, err := c.do(ctx, http.MethodPost, apiPrefix+c.SecretsARN, map[string]string{"X-Amz-Invocation-Type": "RequestResponse"}, body)
	if err != nil {
		return Secret{}, err
	}
	_, out, err := c.do(ctx, http.MethodGet, apiPrefix+c.SecretsARN,
		map[string]string{"X-Amz-InvocationId": res.Header.Get("X-Amz-InvocationId")}, nil)
	if err != nil {
		return Secret{}, err
	}
	var se SecretError
	if json.Unmarshal(out, &se) == nil && se.Status != 0 {
		return Secret{}, &se
	}
	var s Secret
	if err := json.Unmarshal(out, &s); err != nil {
		return Secret{}, fmt.Errorf("ggfunc: secret: %w", err)
	}
	return s, nil
}

// Invoke calls another local function of the group with payload
// (RequestResponse) and waits for its result. funcErr is "" on success,
// "Handled" when the function reported an error, "Unhandled" when the
// core failed the invocation (a crash, or the function's Timeout); out is
// then the error's JSON ({"errorMessage": ...}).
func (c *Client) Invoke(ctx context.Context, functionARN string, payload []byte) (out []byte, funcErr string, err error) {
	cc, _ := json.Marshal(map[string]any{"custom": map[string]string{}})
	res, _, err := c.do(ctx, http.MethodPost, apiPrefix+functionARN, map[string]string{
		"X-Amz-Client-Context":  base64.StdEncoding.EncodeToString(cc),
		"X-Amz-Invocation-Type": "RequestResponse",
	}, payload)
	if err != nil {
		return nil, "", err
	}
	res, out, err = c.do(ctx, http.MethodGet, apiPrefix+functionARN,
		map[string]string{"X-Amz-InvocationId": res.Header.Get("X-Amz-InvocationId")}, nil)
	if err != nil {
		return nil, "", err
	}
	return out, res.Header.Get("X-Amz-Function-Error"), nil
}

// Invocation is one piece of work for the function.
type Invocation struct {
	ID      string
	Payload []byte
	// Subject is the topic of a routed message (client context
	// custom.subject); Source its publisher.
	Subject, Source string
}

// Handler handles one invocation; an error is posted as a Handled
// function error.
type Handler func(ctx context.Context, inv Invocation) ([]byte, error)

// Run fetches work and calls h for each invocation, one at a time,
// until ctx ends or the core refuses the function.
func (c *Client) Run(ctx context.Context, h Handler) error {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		res, payload, err := c.do(ctx, http.MethodGet, apiPrefix+c.ARN+"/work", nil, nil)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		inv := Invocation{ID: res.Header.Get("X-Amz-InvocationId"), Payload: payload}
		var cc struct {
			Custom struct{ Subject, Source string } `json:"custom"`
		}
		if raw, err := base64.StdEncoding.DecodeString(res.Header.Get("X-Amz-Client-Context")); err == nil {
			_ = json.Unmarshal(raw, &cc)
		}
		inv.Subject, inv.Source = cc.Custom.Subject, cc.Custom.Source
		out, herr := h(ctx, inv)
		hdr := map[string]string{"X-Amz-InvocationId": inv.ID}
		if herr != nil {
			hdr["X-Amz-Function-Error"] = "Handled"
			out, _ = json.Marshal(map[string]string{"errorMessage": herr.Error()})
		}
		if _, _, err := c.do(ctx, http.MethodPost, apiPrefix+c.ARN+"/work", hdr, out); err != nil && ctx.Err() == nil {
			return err
		}
	}
	return ctx.Err()
}
