package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/tools/ggcloud/admin"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// benchThings is the fleet size of the benchmarks.
const benchThings = 10000

// BenchmarkDiscover measures one Discovery call over mutual TLS on
// 127.0.0.1 with a keep-alive client, against a `ggcloud serve` whose
// store holds 10,000 things: 100 groups of a core and 99 devices.
func BenchmarkDiscover(b *testing.B) {
	data, p, device := fleet10k(b)
	s := serve(b, data, p)
	client := p.client(device, nil)
	url := "https://" + s.addr + "/greengrass/discover/thing/thing-00001"
	discover := func() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("discover: %d", resp.StatusCode)
		}
	}
	discover() // the handshake, once: the client keeps the connection
	for b.Loop() {
		discover()
	}
}

// BenchmarkServeMemory10k starts the ggcloud command (a separate process,
// built here) on a store of 10,000 things in 100 groups, answers one
// Discovery call per thing's group a hundred times over fresh mutual-TLS
// connections, and reports the process's resident memory (VmRSS) and its
// peak (VmHWM).
func BenchmarkServeMemory10k(b *testing.B) {
	data, p, device := fleet10k(b)
	bin := filepath.Join(b.TempDir(), "ggcloud")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	var stderr testtool.Buffer
	cmd := exec.Command(bin, "--data", data, "serve", "--listen", "127.0.0.1:0", "--cert", p.serverCert, "--key", p.server)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	var addr string
	if !testtool.Poll(testtool.Timeout, func() bool {
		if m := readyLine.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	}) {
		b.Fatalf("ggcloud not ready within %v:\n%s", testtool.Timeout, stderr.String())
	}
	for b.Loop() {
		for range 100 {
			client := p.client(device, nil) // a fresh connection each time
			resp, err := client.Get("https://" + addr + "/greengrass/discover/thing/thing-00001")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			client.CloseIdleConnections()
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, field := range []struct{ name, metric string }{{"VmRSS:", "rss-MiB"}, {"VmHWM:", "peak-rss-MiB"}} {
		for _, line := range strings.Split(string(status), "\n") {
			var kb float64
			if strings.HasPrefix(line, field.name) {
				fmt.Sscan(strings.TrimPrefix(line, field.name), &kb)
				b.ReportMetric(kb/1024, field.metric)
			}
		}
	}
}

// fleet10k writes a store of 10,000 things (100 groups of a core and 99
// devices, each with a certificate) into a fresh data directory, with a
// discovery policy on thing-00001, whose certificate it returns.
func fleet10k(b *testing.B) (string, *pkiFiles, thing) {
	b.Helper()
	data := filepath.Join(b.TempDir(), "data")
	p := newPKI(b)
	device := p.issue(b, "thing-00001", time.Now().Add(time.Hour))
	st, err := store.Open(data)
	if err != nil {
		b.Fatal(err)
	}
	ca, err := os.ReadFile(p.groupCA)
	if err != nil {
		b.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(st.PutPolicy("discover", []byte(devicePolicy)))
	for g := 0; g < benchThings/100; g++ {
		group := store.Group{ID: fmt.Sprintf("group-%03d", g), CAs: []string{string(ca)}}
		for i := 0; i < 100; i++ {
			name := fmt.Sprintf("thing-%05d", g*100+i)
			id := fakeCertificateID(name)
			if name == "thing-00001" {
				id = device.id
			}
			must(st.CreateThing(store.Thing{Name: name}))
			must(st.RegisterCertificate(store.Certificate{ID: id, Thing: name}))
			if i == 0 {
				group.Core = name
				must(st.SetConnectivity(name, []store.Endpoint{{Id: "lan", HostAddress: "10.0.0.1", PortNumber: 8883}}))
			} else {
				group.Devices = append(group.Devices, name)
			}
		}
		must(st.PutGroup(group))
	}
	must(st.AttachPolicy("discover", device.id))
	must(st.Close())
	return data, p, device
}

// BenchmarkRegister10kThings registers 10,000 things, each with a
// certificate and its own policy, through the admin client (in-process),
// and reports ggcloud's heap in use after GC and the state file's size.
func BenchmarkRegister10kThings(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		certs := fastCertificates(b, benchThings)
		b.StartTimer()
		data := filepath.Join(b.TempDir(), "data")
		c, err := admin.Open(data)
		if err != nil {
			b.Fatal(err)
		}
		for i, cert := range certs {
			name := fmt.Sprintf("thing-%05d", i)
			if _, err := c.CreateThing(ctx, name); err != nil {
				b.Fatal(err)
			}
			id, err := c.RegisterCertificate(ctx, name, cert)
			if err != nil {
				b.Fatal(err)
			}
			doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"greengrass:Discover","Resource":"arn:aws:iot:us-east-1:000000000000:thing/%s"}}`, name)
			if err := c.PutPolicy(ctx, name+"-policy", []byte(doc)); err != nil {
				b.Fatal(err)
			}
			if err := c.AttachPolicy(ctx, name+"-policy", id); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		things, err := c.ListThings(ctx)
		if err != nil || len(things) != benchThings {
			b.Fatalf("%d things registered, %v", len(things), err)
		}
		things = nil
		// The test's own certificates are not ggcloud's heap.
		certs = nil
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "ggcloud-heap-MiB")
		if info, err := os.Stat(filepath.Join(data, "ggcloud.db")); err == nil {
			b.ReportMetric(float64(info.Size())/(1<<20), "db-MiB")
		}
		c.Close()
		b.StartTimer()
	}
}

// fakeCertificateID is a stand-in certificate ID for a thing that never
// connects.
func fakeCertificateID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// fastCertificates makes n distinct certificate PEMs under a throwaway
// EC CA: quick to make, as real to ggcloud as any.
func fastCertificates(b *testing.B, n int) [][]byte {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	out := make([][]byte, n)
	for i := range out {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: fmt.Sprintf("thing-%05d", i)},
			NotBefore: ca.NotBefore, NotAfter: ca.NotAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, key)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return out
}
