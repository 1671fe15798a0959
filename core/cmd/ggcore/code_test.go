package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/archive"
	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/controlplane"
)

func codeTGZ(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// codeServer is a control plane serving body for any code request.
func codeServer(t *testing.T, status int, body []byte) *controlplane.Client {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/deployments/d1/code/") {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	tls := srv.Client().Transport.(*http.Transport).TLSClientConfig
	c := controlplane.New(controlplane.Options{Host: host, Port: p, Thing: "core", TLS: tls})
	t.Cleanup(c.Close)
	return c
}

func refOf(data []byte) codeRef {
	sum := sha256.Sum256(data)
	return codeRef{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
}

// fetchCode places a checked, safely unpacked archive, and refuses one
// that does not match the deployment, leaving nothing behind.
func TestFetchCode(t *testing.T) {
	good := codeTGZ(t, map[string]string{"index.js": "exports.handler = () => {}"})
	slip := codeTGZ(t, map[string]string{"../evil.js": "x"})
	tampered := append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1)
	for _, tc := range []struct {
		name      string
		status    int
		served    []byte
		ref       codeRef
		want      string // "" for success
		transient bool
	}{
		{"good", 200, good, refOf(good), "", false},
		{"tampered", 200, tampered, refOf(good), "SHA-256 mismatch", false},
		{"oversize", 200, append(bytes.Clone(good), 0), refOf(good), "answer too large", false},
		{"short", 200, good[:10], refOf(good), "size mismatch", false},
		{"unsafe archive", 200, slip, refOf(slip), archive.ErrUnsafe.Error(), false},
		{"refused", 404, []byte(`{"Message":"no such code"}`), refOf(good), "no such code", false},
		{"control plane down", 503, []byte(`{"Message":"try later"}`), refOf(good), "try later", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cloud := codeServer(t, tc.status, tc.served)
			root := t.TempDir()
			dir := filepath.Join(root, tc.ref.Sha256)
			err := fetchCode(context.Background(), cloud, controlplane.DeploymentRef{GroupId: "g", DeploymentId: "d1"}, tc.ref, root, dir)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if b, err := os.ReadFile(filepath.Join(dir, "index.js")); err != nil || !strings.Contains(string(b), "handler") {
					t.Errorf("index.js: %q, %v", b, err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("fetchCode = %v; want an error with %q", err, tc.want)
				}
				if isRetry := retried(err); isRetry != tc.transient {
					t.Errorf("transient = %v; want %v (%v)", isRetry, tc.transient, err)
				}
			}
			entries, _ := os.ReadDir(root)
			for _, e := range entries {
				if e.Name() != tc.ref.Sha256 || tc.want != "" {
					t.Errorf("left %s in the code root", e.Name())
				}
			}
		})
	}
}

func TestFunctionCodeRefs(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		code, want string
	}{
		{`{"Sha256":"` + h + `","Size":10}`, ""},
		{`{"Sha256":"` + strings.ToUpper(h) + `","Size":10}`, "lowercase hex"},
		{`{"Sha256":"abc","Size":10}`, "lowercase hex"},
		{`{"Sha256":"` + h + `","Size":0}`, "want 1 to"},
		{`{"Sha256":"` + h + `","Size":99999999999}`, "want 1 to"},
	} {
		g := &config.Group{Functions: []json.RawMessage{json.RawMessage(`{"FunctionArn":"arn:aws:lambda:us-east-1:1:function:f:1","Code":` + tc.code + `}`)}}
		refs, err := functionCode(g)
		if tc.want == "" {
			if err != nil || refs["arn:aws:lambda:us-east-1:1:function:f:1"].Sha256 != h {
				t.Errorf("%s: %v, %v", tc.code, refs, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.code, err, tc.want)
		}
	}
}

// retried reports whether err was marked deploy.Retry (tried again at
// the next poll rather than failing the deployment).
func retried(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if fmt.Sprintf("%T", err) == "*deploy.transientError" {
			return true
		}
	}
	return false
}
