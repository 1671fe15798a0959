// Package controlplane is the core's client of the control plane
// (ggcloud, docs/design.md "Control plane and deployments"): HTTPS with mutual TLS, the core
// identified by its IoTCertificate, bodies in Greengrass v1's shapes.
package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ggcore/ggcore/core/pki"
)

// maxResponse bounds a response body; maxMessage bounds how much of a
// body that is not the control plane's JSON (a proxy's page) goes into
// an error.
const (
	maxResponse = MaxDeployment
	maxMessage  = 200
)

// Options configure a Client.
type Options struct {
	// Host and Port are config.json's coreThing.ggHost and ggHttpPort.
	Host string
	Port int
	// Thing is the core's thing name: the {thing} of the paths.
	Thing string
	// TLS is the client TLS configuration (tlsconf.Client): the roots
	// that verify the control plane and the core's client certificate.
	TLS *tls.Config
	// Timeout bounds one call; zero means 30 s. A download (function code,
	// an image release) is bounded by progress instead: it fails when no
	// byte arrives for Timeout, however long the whole transfer takes.
	Timeout time.Duration
}

// Client calls the control plane's API for one core.
type Client struct {
	base  string
	thing string
	http  *http.Client
	// download shares http's transport without its overall time limit;
	// stall bounds each wait for more bytes.
	download *http.Client
	stall    time.Duration
}

// New returns a client; it connects on first use.
func New(o Options) *Client {
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	transport := &http.Transport{
		TLSClientConfig:       o.TLS,
		ForceAttemptHTTP2:     false,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       time.Minute,
		ResponseHeaderTimeout: timeout,
	}
	return &Client{
		base:     "https://" + net.JoinHostPort(o.Host, strconv.Itoa(o.Port)),
		thing:    o.Thing,
		http:     &http.Client{Timeout: timeout, Transport: transport},
		download: &http.Client{Transport: transport},
		stall:    timeout,
	}
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Endpoint is one entry of the core's connectivity information.
type Endpoint struct {
	Id          string `json:"Id"`
	HostAddress string `json:"HostAddress"`
	PortNumber  int    `json:"PortNumber"`
	Metadata    string `json:"Metadata"`
}

// APIError is an answer other than 200: its status and the control
// plane's message.
type APIError struct {
	Call    string
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %d %s: %s", e.Call, e.Status, http.StatusText(e.Status), e.Message)
}

// UpdateConnectivity replaces the core's connectivity information
// (UpdateConnectivityInfo).
func (c *Client) UpdateConnectivity(ctx context.Context, eps []Endpoint) error {
	body := struct {
		ConnectivityInfo []Endpoint `json:"ConnectivityInfo"`
	}{eps}
	return c.call(ctx, "UpdateConnectivityInfo", http.MethodPut, "/greengrass/things/"+url.PathEscape(c.thing)+"/connectivityInfo", body, nil)
}

// Certificate is what CreateCertificate returns: the MQTT server
// certificate and the group CA that signed it.
type Certificate struct {
	Leaf      *x509.Certificate
	GroupCA   *x509.Certificate
	ExpiresAt time.Time
}

// CreateCertificate sends a certificate request (DER) for the core's MQTT
// server key and returns the certificate the group CA signed, checked to
// chain to that CA.
func (c *Client) CreateCertificate(ctx context.Context, csrDER []byte) (*Certificate, error) {
	const call = "CreateCertificate"
	req := map[string]string{"Csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))}
	var resp struct {
		CertificatePem string
		GroupCA        string
		ExpiresAt      string
	}
	if err := c.call(ctx, call, http.MethodPost, "/greengrass/things/"+url.PathEscape(c.thing)+"/certificate", req, &resp); err != nil {
		return nil, err
	}
	leaf, err := pki.ParseCertificates([]byte(resp.CertificatePem))
	if err != nil {
		return nil, fmt.Errorf("%s: CertificatePem: %w", call, err)
	}
	ca, err := pki.ParseCertificates([]byte(resp.GroupCA))
	if err != nil {
		return nil, fmt.Errorf("%s: GroupCA: %w", call, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca[0])
	if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("%s: the certificate does not chain to the group CA: %w", call, err)
	}
	return &Certificate{Leaf: leaf[0], GroupCA: ca[0], ExpiresAt: leaf[0].NotAfter}, nil
}

// call sends in as JSON and decodes a 200 answer into out.
func (c *Client) call(ctx context.Context, name, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", name, err)
	}
	if len(answer) > maxResponse {
		return fmt.Errorf("%s: %w: more than %d bytes", name, ErrTooLarge, maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		if json.Unmarshal(answer, &e) != nil || e.Message == "" {
			e.Message = string(bytes.TrimSpace(answer))
			if len(e.Message) > maxMessage {
				e.Message = e.Message[:maxMessage] + "…"
			}
			if e.Message == "" {
				e.Message = "(empty body)"
			}
		}
		return &APIError{Call: name, Status: resp.StatusCode, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("%s: answer: %w", name, err)
	}
	return nil
}

// Refused reports an answer that retrying will not change (4xx other than
// 408 and 429): a policy refusal, an unknown thing, a bad request.
func Refused(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// MaxDeployment bounds a deployment's group.json: a larger one is refused
// before it is read whole.
const MaxDeployment = 1 << 20

// DeploymentRef names a deployment of a group.
type DeploymentRef struct {
	GroupId      string `json:"GroupId"`
	DeploymentId string `json:"DeploymentId"`
}

// ErrTooLarge is an answer larger than MaxDeployment: refused unread,
// and not worth asking again.
var ErrTooLarge = errors.New("answer too large")

// ErrNoDeployment is CurrentDeployment's answer when the core's group has
// never been deployed.
var ErrNoDeployment = errors.New("no deployment")

// CurrentDeployment asks which deployment the core should run.
func (c *Client) CurrentDeployment(ctx context.Context) (DeploymentRef, error) {
	var ref DeploymentRef
	err := c.call(ctx, "GetDeployment", http.MethodGet, "/greengrass/things/"+url.PathEscape(c.thing)+"/deployment", nil, &ref)
	var e *APIError
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		return DeploymentRef{}, fmt.Errorf("%w: %s", ErrNoDeployment, e.Message)
	}
	return ref, err
}

// GetDeployment fetches a deployment's group.json (at most MaxDeployment
// bytes).
func (c *Client) GetDeployment(ctx context.Context, ref DeploymentRef) ([]byte, error) {
	var doc json.RawMessage
	path := "/greengrass/groups/" + url.PathEscape(ref.GroupId) + "/deployments/" + url.PathEscape(ref.DeploymentId)
	if err := c.call(ctx, "GetDeployment", http.MethodGet, path, nil, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// Deployment statuses of UpdateCoreDeploymentStatus.
const (
	StatusInProgress = "InProgress"
	StatusSuccess    = "Success"
	StatusFailure    = "Failure"
)

// UpdateDeploymentStatus reports the core's progress with a deployment
// (UpdateCoreDeploymentStatus); coreARN is the core's thing ARN.
func (c *Client) UpdateDeploymentStatus(ctx context.Context, ref DeploymentRef, coreARN, status, message string) error {
	path := "/greengrass/groups/" + url.PathEscape(ref.GroupId) + "/deployments/" + url.PathEscape(ref.DeploymentId) +
		"/cores/" + url.QueryEscape(coreARN)
	body := map[string]string{"Status": status, "ErrorMessage": message}
	return c.call(ctx, "UpdateCoreDeploymentStatus", http.MethodPost, path, body, nil)
}
