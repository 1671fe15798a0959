package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// maxSocketPath is the longest unix socket path Linux accepts.
const maxSocketPath = 107

// maxResponse bounds an answer.
const maxResponse = 16 << 20

// Client calls the admin API of one data directory.
type Client struct {
	http   *http.Client
	served bool
	close  func() error
}

// Open returns a client of the data directory dataDir: through its admin
// socket when a ggcloud serves it, else through the store, opened here
// (and locked until Close) with the same handler served in-process.
func Open(dataDir string) (*Client, error) {
	path := SocketPath(dataDir)
	if len(path) <= maxSocketPath {
		conn, err := net.DialTimeout("unix", path, 5*time.Second)
		if err == nil {
			conn.Close()
			return socketClient(path), nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("admin: %s: %w", path, err)
		}
	}
	st, err := store.Open(dataDir)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	ln := newPipeListener()
	srv := &http.Server{Handler: Handler(st, nil), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	tr := &http.Transport{DialContext: ln.dial, DisableKeepAlives: true}
	return &Client{
		http: &http.Client{Transport: tr},
		close: func() error {
			tr.CloseIdleConnections()
			srv.Close()
			return st.Close()
		},
	}, nil
}

// socketClient calls a ggcloud serving the socket at path.
func socketClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{
		http:   &http.Client{Transport: tr},
		served: true,
		close:  func() error { tr.CloseIdleConnections(); return nil },
	}
}

// Served reports whether a running ggcloud answers this client (true), or
// the client opened the store itself (false).
func (c *Client) Served() bool { return c.served }

// Close releases the connection, or the store the client opened.
func (c *Client) Close() error { return c.close() }

// Error is a refusal of the admin API. It matches store.ErrNotFound,
// store.ErrExists and store.ErrConflict with errors.Is.
type Error struct {
	Status  int    // HTTP status
	Code    string // NotFound, Exists, Conflict, Invalid or Internal
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is matches the store's sentinel errors by code.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case "NotFound":
		return target == store.ErrNotFound
	case "Exists":
		return target == store.ErrExists
	case "Conflict":
		return target == store.ErrConflict
	}
	return false
}

// call sends in (JSON, or raw bytes) and decodes a 200 answer into out.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	switch v := in.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(v)
	default:
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://ggcloud"+path, body)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("admin: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			e = errorBody{Message: fmt.Sprintf("admin: %s %s: %s", method, path, resp.Status), Code: "Internal"}
		}
		return &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin: %s %s: answer: %w", method, path, err)
	}
	return nil
}

// esc escapes one path segment.
func esc(s string) string { return url.PathEscape(s) }

// Identity returns the region and account the data directory renders
// ARNs with.
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	var id Identity
	return id, c.call(ctx, "GET", "/v1/identity", nil, &id)
}

// UseIdentity fixes the region and account the data directory renders
// ARNs with, and returns them. Empty arguments mean "as fixed, else the
// default" (us-east-1, 000000000000). Once fixed, other values are
// refused (errors.Is store.ErrConflict).
func (c *Client) UseIdentity(ctx context.Context, region, account string) (Identity, error) {
	var id Identity
	return id, c.call(ctx, "PUT", "/v1/identity", Identity{Region: region, Account: account}, &id)
}

// CreateThing registers a thing; an existing thing is returned as is,
// with Created false.
func (c *Client) CreateThing(ctx context.Context, name string) (Thing, error) {
	var t Thing
	return t, c.call(ctx, "POST", "/v1/things", Thing{Name: name}, &t)
}

// ListThings lists the registered things in name order.
func (c *Client) ListThings(ctx context.Context) ([]Thing, error) {
	var things []Thing
	return things, c.call(ctx, "GET", "/v1/things", nil, &things)
}

// GetThing returns a thing with the IDs of its certificates.
func (c *Client) GetThing(ctx context.Context, name string) (Thing, error) {
	var t Thing
	return t, c.call(ctx, "GET", "/v1/things/"+esc(name), nil, &t)
}

// RegisterCertificate registers a thing's certificate (one PEM
// CERTIFICATE) and returns its ID. Registering it again for the same
// thing is fine; for another thing it is refused.
func (c *Client) RegisterCertificate(ctx context.Context, thing string, certPEM []byte) (string, error) {
	var out struct{ CertificateId string }
	err := c.call(ctx, "POST", "/v1/things/"+esc(thing)+"/certificates", map[string]string{"CertificatePem": string(certPEM)}, &out)
	return out.CertificateId, err
}

// PutPolicy stores an AWS IoT policy document under name, replacing the
// one stored before.
func (c *Client) PutPolicy(ctx context.Context, name string, doc []byte) error {
	return c.call(ctx, "PUT", "/v1/policies/"+esc(name), doc, nil)
}

// AttachPolicy attaches a stored policy to a registered certificate.
func (c *Client) AttachPolicy(ctx context.Context, name, certID string) error {
	return c.call(ctx, "POST", "/v1/policies/"+esc(name)+"/attachments", map[string]string{"CertificateId": certID}, nil)
}

// CreateGroup creates a group with its core and CA. The same group again
// changes nothing; another one under its ID is refused.
func (c *Client) CreateGroup(ctx context.Context, g NewGroup) (Group, error) {
	var out Group
	return out, c.call(ctx, "POST", "/v1/groups", g, &out)
}

// GetGroup returns a group.
func (c *Client) GetGroup(ctx context.Context, id string) (Group, error) {
	var out Group
	return out, c.call(ctx, "GET", "/v1/groups/"+esc(id), nil, &out)
}

// ListGroups lists the groups in ID order.
func (c *Client) ListGroups(ctx context.Context) ([]Group, error) {
	var out []Group
	return out, c.call(ctx, "GET", "/v1/groups", nil, &out)
}

// AddDevice adds a thing to a group as a device with certificate certID,
// or with its only certificate when certID is empty.
func (c *Client) AddDevice(ctx context.Context, group, thing, certID string) error {
	return c.call(ctx, "POST", "/v1/groups/"+esc(group)+"/devices", Member{Thing: thing, CertificateId: certID}, nil)
}

// RemoveDevice takes a device out of a group; subscriptions naming it
// must go first.
func (c *Client) RemoveDevice(ctx context.Context, group, thing string) error {
	return c.call(ctx, "DELETE", "/v1/groups/"+esc(group)+"/devices/"+esc(thing), nil, nil)
}

// RemoveSubscription deletes a subscription of a group by ID.
func (c *Client) RemoveSubscription(ctx context.Context, group, id string) error {
	return c.call(ctx, "DELETE", "/v1/groups/"+esc(group)+"/subscriptions/"+esc(id), nil, nil)
}

// AddSubscription adds a subscription to a group and returns it as
// stored: Source and Target may be thing names of the group, which
// become their ARNs.
func (c *Client) AddSubscription(ctx context.Context, group string, sub store.Subscription) (store.Subscription, error) {
	var out store.Subscription
	return out, c.call(ctx, "POST", "/v1/groups/"+esc(group)+"/subscriptions", sub, &out)
}

// Deploy renders the group as a new deployment, makes it current, and
// returns its ID.
func (c *Client) Deploy(ctx context.Context, group string) (string, error) {
	var d Deployment
	err := c.call(ctx, "POST", "/v1/groups/"+esc(group)+"/deployments", nil, &d)
	return d.DeploymentId, err
}

// ListDeployments lists a group's deployments, oldest first.
func (c *Client) ListDeployments(ctx context.Context, group string) ([]Deployment, error) {
	var out []Deployment
	return out, c.call(ctx, "GET", "/v1/groups/"+esc(group)+"/deployments", nil, &out)
}

// DeploymentStatus returns a deployment with its core's status.
func (c *Client) DeploymentStatus(ctx context.Context, group, deployment string) (Deployment, error) {
	var out Deployment
	return out, c.call(ctx, "GET", "/v1/groups/"+esc(group)+"/deployments/"+esc(deployment), nil, &out)
}

// SetConnectivity replaces a thing's connectivity information.
func (c *Client) SetConnectivity(ctx context.Context, thing string, eps []store.Endpoint) error {
	return c.call(ctx, "PUT", "/v1/things/"+esc(thing)+"/connectivity", Connectivity{ConnectivityInfo: eps}, nil)
}

// Connectivity returns a thing's connectivity information.
func (c *Client) Connectivity(ctx context.Context, thing string) ([]store.Endpoint, error) {
	var out Connectivity
	return out.ConnectivityInfo, c.call(ctx, "GET", "/v1/things/"+esc(thing)+"/connectivity", nil, &out)
}
