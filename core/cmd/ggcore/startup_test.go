package main

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// TestRefusedStartLeavesNoSessionStore: the broker's session store opens
// while the keys do, yet a start refused for a bad key, or because the
// MQTT port is taken (after the store opened), leaves no store behind;
// a start that succeeds keeps it.
func TestRefusedStartLeavesNoSessionStore(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tests := []struct {
		name string
		edit func(t *testing.T, dir string)
		want string
	}{
		{"missing IoT key", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "certs/core.key.pem"))
		}, "crypto.principals.IoTCertificate.privateKeyPath"},
		{"MQTT port taken", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) {
				obj(m, "coreThing")["ggMqttPort"] = taken.Addr().(*net.TCPAddr).Port
				obj(m, "ggcore")["localMqttBind"] = "127.0.0.1"
			})
		}, "coreThing.ggMqttPort: listen on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := bundle(t)
			tt.edit(t, dir)
			var stderr bytes.Buffer
			if code := run([]string{"--config", filepath.Join(dir, "config.json")}, &stderr); code != 1 {
				t.Fatalf("exit %d, want 1; log:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("log does not name %q:\n%s", tt.want, stderr.String())
			}
			if _, err := os.Stat(filepath.Join(dir, "write", "broker")); !os.IsNotExist(err) {
				t.Errorf("a refused start left write/broker behind (%v)", err)
			}
		})
	}
	t.Run("started", func(t *testing.T) {
		dir := bundle(t)
		editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) {
			obj(m, "coreThing")["ggMqttPort"] = testtool.FreePort(t)
			obj(m, "ggcore")["localMqttBind"] = "127.0.0.1"
		})
		var stderr bytes.Buffer
		c, err := start(filepath.Join(dir, "config.json"), slog.New(slog.NewTextHandler(&stderr, nil)), nil)
		if err != nil {
			t.Fatalf("start: %v\n%s", err, stderr.String())
		}
		if err := c.stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "write", "broker", "sessions.db")); err != nil {
			t.Errorf("the session store is not kept after a start: %v", err)
		}
	})
}

// TestWaitFD: with --wait-fd ggcore reads nothing (here: its config)
// until the inherited descriptor reaches end of file, as gginit has it
// while it mounts the data partition.
func TestWaitFD(t *testing.T) {
	dir := bundle(t)
	cfg := filepath.Join(t.TempDir(), "config.json")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var stderr bytes.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- run([]string{"--config", cfg, "--wait-fd", strconv.Itoa(int(r.Fd()))}, &stderr)
	}()
	// The config appears only now, and is refused: ggcore read it after
	// the gate opened, not before (that would be "no such file").
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, bytes.Replace(data, []byte(`"ggMqttPort"`), []byte(`"ggMqttPort": 70000, "x"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if code := <-exited; code != 1 {
		t.Fatalf("exit %d, want 1; log:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "coreThing.ggMqttPort") {
		t.Fatalf("ggcore did not wait for the gate before reading its config:\n%s", stderr.String())
	}
}

// TestReadyFDClosedWhenStartFails: gginit brings the network up once the
// descriptor it passed with --ready-fd reaches end of file; a start that
// fails closes it too, so that gginit does not wait for a ready that
// will not come.
func TestReadyFDClosedWhenStartFails(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := syscall.Dup(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	w.Close() // run holds the only write end: fd
	var stderr bytes.Buffer
	if code := run([]string{"--config", filepath.Join(t.TempDir(), "missing.json"), "--ready-fd", strconv.Itoa(fd)}, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; log:\n%s", code, stderr.String())
	}
	if err := r.SetReadDeadline(time.Now().Add(testtool.Timeout)); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("ready pipe after a failed start: read %d, %v; want end of file", n, err)
	}
}
