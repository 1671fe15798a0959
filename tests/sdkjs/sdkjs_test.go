package sdkjs

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

const (
	region  = "us-east-1"
	account = "123456789012"
	arnBase = "arn:aws:iot:" + region + ":" + account + ":thing/"

	// devicePolicy lets a device discover itself and nothing else.
	devicePolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"greengrass:Discover",
 "Resource":"arn:aws:iot:us-east-1:123456789012:thing/${iot:Connection.Thing.ThingName}"}]}`

	// alpnProtocol is the ALPN protocol the SDK offers on port 443.
	alpnProtocol = "x-amzn-http-ca"

	npmTimeout  = 5 * time.Minute
	nodeTimeout = time.Minute
)

// summary is what discover.js prints: what the SDK parsed, or its error.
type summary struct {
	Groups []struct {
		ID    string `json:"id"`
		Cores []struct {
			ThingArn     string `json:"thingArn"`
			Connectivity []struct {
				ID       string `json:"id"`
				Host     string `json:"host"`
				Port     int    `json:"port"`
				Metadata string `json:"metadata"`
			} `json:"connectivity"`
		} `json:"cores"`
		CACount int    `json:"caCount"`
		FirstCA string `json:"firstCA"`
	} `json:"groups"`
	Error        string `json:"error"`
	ResponseCode *int   `json:"responseCode"`
}

// device is a registered thing's credentials, as files the SDK reads.
type device struct {
	thing, certFile, keyFile string
}

func TestDiscoveryClient(t *testing.T) {
	node, npm := requireNode(t)
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	npmCI(t, npm, dir)
	port := sdkPort(t, node, dir)
	listen(t, port).Close() // fail early, and clearly, if the port is not ours

	tmp := t.TempDir()
	// root plays Amazon's root CA: it issues ggcloud's server certificate
	// and the things' certificates.
	root, err := pki.NewCA("ggcloud test root CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(tmp, "root.pem")
	writeFile(t, rootFile, pki.EncodeCertificate(root.Cert))

	st, err := store.Open(filepath.Join(tmp, "state"))
	if err != nil {
		t.Fatal(err)
	}
	register := func(thing string, kt keyspec.Type, policy string) device {
		t.Helper()
		d := issue(t, root, tmp, thing, kt)
		if policy == "" {
			return d // an unregistered certificate
		}
		cert, err := pki.ReadCertificates(d.certFile)
		if err != nil {
			t.Fatal(err)
		}
		id := pki.CertificateID(cert[0].Raw)
		must(t, st.CreateThing(store.Thing{Name: thing, ARN: arnBase + thing}))
		must(t, st.RegisterCertificate(store.Certificate{ID: id, Thing: thing, PEM: string(pki.EncodeCertificate(cert[0]))}))
		must(t, st.PutPolicy(thing+"-policy", []byte(policy)))
		must(t, st.AttachPolicy(thing+"-policy", id))
		return d
	}
	must(t, st.CreateThing(store.Thing{Name: "gw", ARN: arnBase + "gw"}))
	must(t, st.SetConnectivity("gw", []store.Endpoint{{Id: "lan", HostAddress: "127.0.0.1", PortNumber: 8883, Metadata: "loopback"}}))
	sensor := register("sensor", keyspec.ECP256, devicePolicy)
	lamp := register("lamp", keyspec.RSA2048, devicePolicy)
	stray := register("stray", keyspec.ECP256, "")
	groupCA, err := pki.NewCA("group-1 CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	groupCAKey, err := keys.MarshalPEM(groupCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	groupCAPEM := string(pki.EncodeCertificate(groupCA.Cert))
	must(t, st.PutGroup(store.Group{ID: "group-1", Core: "gw", Devices: []string{"sensor", "lamp"},
		CAs: []string{groupCAPEM}, CAKey: string(groupCAKey), CertificateExpiryMs: 7 * 24 * 3600 * 1000}))

	must(t, st.Close()) // ggcloud opens it next
	serve(t, port, root, filepath.Join(tmp, "state"))
	if port == 443 {
		if got := negotiated(t, port, sensor, rootFile); got != alpnProtocol {
			t.Errorf("ggcloud on port 443 negotiated ALPN %q; the SDK offers only %q", got, alpnProtocol)
		}
	}

	run := func(t *testing.T, d device, thing string) (summary, string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "discover.js",
			"--server-name", "127.0.0.1", "--region", region,
			"--cert", d.certFile, "--key", d.keyFile, "--ca", rootFile, "--thing", thing)
		cmd.Dir = dir
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		runErr := cmd.Run()
		out := fmt.Sprintf("stdout: %s\nstderr: %s", stdout.String(), stderr.String())
		t.Logf("node discover.js --thing %s (%s's certificate): %v after %v", thing, d.thing, cmp.Or[any](runErr, "ok"), time.Since(start).Round(time.Millisecond))
		if ctx.Err() != nil {
			t.Fatalf("node discover.js did not finish within %v; %s", nodeTimeout, out)
		}
		var s summary
		if err := json.Unmarshal(lastLine(stdout.Bytes()), &s); err != nil {
			t.Fatalf("discover.js printed no JSON summary (%v); exit: %v; %s", err, runErr, out)
		}
		return s, out, runErr
	}

	for _, d := range []device{sensor, lamp} {
		t.Run(d.thing+" discovers its core", func(t *testing.T) {
			s, out, err := run(t, d, d.thing)
			if err != nil {
				t.Fatalf("discover %s: %v; %s", d.thing, err, out)
			}
			if len(s.Groups) != 1 {
				t.Fatalf("SDK parsed %d groups; want 1; %s", len(s.Groups), out)
			}
			g := s.Groups[0]
			if g.ID != "group-1" {
				t.Errorf("group id = %q; want group-1", g.ID)
			}
			if len(g.Cores) != 1 {
				t.Fatalf("SDK parsed %d cores; want 1; %s", len(g.Cores), out)
			}
			c := g.Cores[0]
			if c.ThingArn != arnBase+"gw" {
				t.Errorf("core thing ARN = %q; want %q", c.ThingArn, arnBase+"gw")
			}
			if len(c.Connectivity) != 1 {
				t.Fatalf("SDK parsed %d connectivity entries; want 1; %s", len(c.Connectivity), out)
			}
			if e := c.Connectivity[0]; e.Host != "127.0.0.1" || e.Port != 8883 || e.ID != "lan" || e.Metadata != "loopback" {
				t.Errorf("core endpoint = %+v; want lan 127.0.0.1:8883 loopback", e)
			}
			if g.CACount != 1 || g.FirstCA != groupCAPEM {
				t.Errorf("group CAs: %d, first %q; want 1, the group CA:\n%s", g.CACount, g.FirstCA, groupCAPEM)
			}
		})
	}

	refused := []struct {
		name  string
		d     device
		thing string
	}{
		{"sensor may not discover lamp", sensor, "lamp"},
		{"unregistered certificate", stray, "stray"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			s, out, err := run(t, tt.d, tt.thing)
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("discover.js: %v; want a non-zero exit; %s", err, out)
			}
			if s.ResponseCode == nil || *s.ResponseCode != 403 || !strings.Contains(s.Error, "Discovery failed") {
				t.Errorf("SDK error = %q, response code %v; want a DiscoveryError with response code 403; %s",
					s.Error, s.ResponseCode, out)
			}
			if len(s.Groups) != 0 {
				t.Errorf("refused discovery still yielded groups: %+v", s.Groups)
			}
		})
	}
}

// requireNode returns the paths of node and npm, or ends the test.
func requireNode(t *testing.T) (node, npm string) {
	t.Helper()
	for _, p := range []struct {
		name string
		path *string
	}{{"node", &node}, {"npm", &npm}} {
		path, err := exec.LookPath(p.name)
		if err != nil {
			testtool.Unavailable(t, fmt.Sprintf("%s not found in PATH: this test runs the AWS IoT Device SDK for JavaScript v2 with node "+
				"and installs it with npm; install them (Debian: `apt-get install nodejs npm`)", p.name))
		}
		*p.path = path
	}
	return node, npm
}

// npmCI installs the pinned SDK into dir/node_modules unless npm's
// record of the last install (node_modules/.package-lock.json) is newer
// than package-lock.json.
func npmCI(t *testing.T, npm, dir string) {
	t.Helper()
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if done, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil && !done.ModTime().Before(lock.ModTime()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmTimeout)
	defer cancel()
	// --ignore-scripts: aws-crt's install script only builds the native
	// addon from source when the package has no prebuilt one for this
	// platform; it has one for linux-x64 and linux-arm64 (glibc and musl).
	cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = dir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("npm ci in %s did not finish within %v:\n%s", dir, npmTimeout, out)
	}
	if err != nil {
		t.Fatalf("npm ci in %s: %v:\n%s", dir, err, out)
	}
	t.Logf("npm ci took %v", time.Since(start).Round(time.Millisecond))
}

// sdkPort is the port the SDK's DiscoveryClient connects to: 443 (ALPN
// x-amzn-http-ca) when its TLS stack has ALPN, 8443 otherwise.
func sdkPort(t *testing.T, node, dir string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "discover.js", "--alpn")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node discover.js --alpn: %v:\n%s", err, out)
	}
	var probe struct{ ALPN bool }
	if err := json.Unmarshal(lastLine(out), &probe); err != nil {
		t.Fatalf("node discover.js --alpn: %v:\n%s", err, out)
	}
	if probe.ALPN {
		return 443
	}
	return 8443
}

// listen opens 127.0.0.1:port, where the SDK will connect.
func listen(t *testing.T, port int) net.Listener {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		t.Cleanup(func() { ln.Close() })
		return ln
	case errors.Is(err, syscall.EADDRINUSE):
		t.Fatalf("listen %s: %v: the SDK's DiscoveryClient always connects to port %d (it has no port parameter), "+
			"so this test needs that port free; stop whatever listens there (ss -ltnp 'sport = :%d')", addr, err, port, port)
	case errors.Is(err, syscall.EACCES):
		testtool.Unavailable(t, fmt.Sprintf("listen %s: %v: the SDK's DiscoveryClient always connects to port %d (it has no port parameter); "+
			"binding it needs root, CAP_NET_BIND_SERVICE or `sysctl net.ipv4.ip_unprivileged_port_start=%d`", addr, err, port, port))
	default:
		t.Fatalf("listen %s: %v", addr, err)
	}
	return nil
}

// serve builds and starts the ggcloud command on 127.0.0.1:port with the
// state in dataDir and a server certificate from root for 127.0.0.1, and
// stops it at cleanup. Any client certificate is taken at the TLS level:
// ggcloud identifies the caller by its registered certificate's hash, as
// AWS IoT does.
func serve(t *testing.T, port int, root *pki.CA, dataDir string) {
	t.Helper()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "ggcloud")
	build := exec.Command("go", "build", "-o", bin, "github.com/ggcore/ggcore/tools/ggcloud")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ggcloud: %v\n%s", err, out)
	}
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.Issue(key.Public(), pki.Leaf{CommonName: "ggcloud", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(tmp, "server.pem"), filepath.Join(tmp, "server.key")
	writeFile(t, certFile, pki.EncodeCertificate(cert))
	writeFile(t, keyFile, marshalKey(t, key))

	ggcloud := testtool.StartProcess(t, exec.Command(bin, "--data", dataDir, "serve", "--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--cert", certFile, "--key", keyFile, "--region", region, "--account", account))
	t.Cleanup(func() {
		if err := ggcloud.Stop(); err != nil {
			t.Errorf("ggcloud did not stop cleanly: %v", err)
		}
		if t.Failed() {
			t.Logf("ggcloud log:\n%s", ggcloud.Output)
		}
	})
	if !ggcloud.WaitFor("ggcloud ready", 0) {
		t.Fatalf("ggcloud not ready within %v (exit: %v):\n%s", testtool.Timeout, ggcloud.Err(), ggcloud.Output)
	}
}

// negotiated dials ggcloud offering only the SDK's ALPN protocol and
// returns what the server chose.
func negotiated(t *testing.T, port int, d device, rootFile string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(d.certFile, d.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{
		ServerName: "127.0.0.1", InsecureSkipVerify: true, // only the protocol matters here
		Certificates: []tls.Certificate{cert}, NextProtos: []string{alpnProtocol},
	})
	if err != nil {
		t.Fatalf("TLS with ALPN %s: %v", alpnProtocol, err)
	}
	defer conn.Close()
	return conn.ConnectionState().NegotiatedProtocol
}

// issue makes a key of type kt and a client certificate from root for
// thing, written as PEM files in dir.
func issue(t *testing.T, root *pki.CA, dir, thing string, kt keyspec.Type) device {
	t.Helper()
	key, err := kt.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.Issue(key.Public(), pki.Leaf{CommonName: thing, Usage: pki.ClientAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	d := device{thing: thing, certFile: filepath.Join(dir, thing+".pem.crt"), keyFile: filepath.Join(dir, thing+".pem.key")}
	writeFile(t, d.certFile, pki.EncodeCertificate(cert))
	writeFile(t, d.keyFile, marshalKey(t, key))
	return d
}

func marshalKey(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	b, err := keys.MarshalPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// lastLine is the last non-empty line of out.
func lastLine(out []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	return lines[len(lines)-1]
}
