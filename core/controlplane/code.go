package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// GetFunctionCode streams the code archive a deployment references by
// its SHA-256 (lowercase hex) into w, at most max bytes: a longer answer
// is ErrTooLarge. It returns the bytes written. The caller checks the
// hash. The transfer may take as long as it needs while bytes keep
// coming; it fails when none arrive for the client's Timeout.
func (c *Client) GetFunctionCode(ctx context.Context, ref DeploymentRef, sha256 string, max int64, w io.Writer) (int64, error) {
	const name = "GetFunctionCode"
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errStalled := fmt.Errorf("no data from the control plane for %s", c.stall)
	stalled := time.AfterFunc(c.stall, func() { cancel(errStalled) })
	defer stalled.Stop()
	path := "/greengrass/groups/" + url.PathEscape(ref.GroupId) + "/deployments/" + url.PathEscape(ref.DeploymentId) +
		"/code/" + url.PathEscape(sha256)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	resp, err := c.download.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, stallCause(ctx, errStalled, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxMessage))
		var e struct{ Message string }
		if json.Unmarshal(answer, &e) != nil || e.Message == "" {
			e.Message = string(bytes.TrimSpace(answer))
		}
		return 0, &APIError{Call: name, Status: resp.StatusCode, Message: e.Message}
	}
	body := &progressReader{r: resp.Body, progress: func() { stalled.Reset(c.stall) }}
	n, err := io.Copy(w, io.LimitReader(body, max+1))
	// A stall cancels the request; the answer is cut short then even if
	// the transport's read happened to end without an error.
	if err != nil || context.Cause(ctx) == errStalled {
		return n, fmt.Errorf("%s: read answer: %w", name, stallCause(ctx, errStalled, err))
	}
	if n > max {
		return n, fmt.Errorf("%s: %w: more than %d bytes", name, ErrTooLarge, max)
	}
	return n, nil
}

// progressReader calls progress after every read that returned bytes.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress()
	}
	return n, err
}

// stallCause returns errStalled, with err when there is one, when ctx
// ended for a stall, else err.
func stallCause(ctx context.Context, errStalled, err error) error {
	if context.Cause(ctx) != errStalled {
		return err
	}
	if err == nil {
		return errStalled
	}
	return fmt.Errorf("%w (%w)", errStalled, err)
}
