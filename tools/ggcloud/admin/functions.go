package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// putFunctionCode stores the body (a zip or tar.gz archive) as the code of
// the function ?arn=, bounded by ?max= bytes (default
// store.DefaultMaxCodeSize).
func (h *handler) putFunctionCode(r *http.Request) (any, error) {
	data, max, err := readUpload(r, store.DefaultMaxCodeSize)
	if err != nil {
		return nil, err
	}
	return h.st.PutFunctionCode(r.URL.Query().Get("arn"), data, max)
}

// readUpload reads an upload's body, at most ?max= bytes (default def)
// and one more, so that the store can tell a body over the bound; it
// returns the bound too.
func readUpload(r *http.Request, def int64) ([]byte, int64, error) {
	max := def
	if v := r.URL.Query().Get("max"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, 0, badRequest{fmt.Errorf("max %q: want a positive number of bytes", v)}
		}
		max = n
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, 0, badRequest{fmt.Errorf("body: %w", err)}
	}
	return data, max, nil
}

func (h *handler) listFunctionCode(*http.Request) (any, error) { return h.st.FunctionCodes() }

func (h *handler) addFunction(r *http.Request) (any, error) {
	var in store.Function
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	return h.st.AddFunction(r.PathValue("group"), in)
}

// PutFunctionCode uploads a function's code archive (zip or tar.gz, at
// most max bytes; 0 means the default, 50 MiB); the group's next
// deployment carries its SHA-256 and size.
func (c *Client) PutFunctionCode(ctx context.Context, arn string, archive []byte, max int64) (store.FunctionCode, error) {
	var out store.FunctionCode
	q := url.Values{"arn": {arn}}
	if max > 0 {
		q.Set("max", strconv.FormatInt(max, 10))
	}
	return out, c.call(ctx, "PUT", "/v1/functions/code?"+q.Encode(), archive, &out)
}

// ListFunctionCode lists the functions' current code (hash and size).
func (c *Client) ListFunctionCode(ctx context.Context) ([]store.FunctionCode, error) {
	var out []store.FunctionCode
	return out, c.call(ctx, "GET", "/v1/functions/code", nil, &out)
}

// AddFunction adds a function (a v1 Functions entry) to a group, or
// replaces the group's function of that ARN.
func (c *Client) AddFunction(ctx context.Context, group string, f store.Function) (store.Function, error) {
	var out store.Function
	return out, c.call(ctx, "POST", "/v1/groups/"+esc(group)+"/functions", f, &out)
}
