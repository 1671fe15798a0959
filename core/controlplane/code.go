package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// GetFunctionCode streams the code archive a deployment references by
// its SHA-256 (lowercase hex) into w, at most max bytes: a longer answer
// is ErrTooLarge. It returns the bytes written. The caller checks the
// hash.
func (c *Client) GetFunctionCode(ctx context.Context, ref DeploymentRef, sha256 string, max int64, w io.Writer) (int64, error) {
	const name = "GetFunctionCode"
	path := "/greengrass/groups/" + url.PathEscape(ref.GroupId) + "/deployments/" + url.PathEscape(ref.DeploymentId) +
		"/code/" + url.PathEscape(sha256)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
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
	n, err := io.Copy(w, io.LimitReader(resp.Body, max+1))
	if err != nil {
		return n, fmt.Errorf("%s: read answer: %w", name, err)
	}
	if n > max {
		return n, fmt.Errorf("%s: %w: more than %d bytes", name, ErrTooLarge, max)
	}
	return n, nil
}
