package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

const groupSample = `{
  "GroupId": "g1", "GroupVersionId": "1", "CertificateExpiryInMilliseconds": 604800000,
  "Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:us-east-1:000000000000:thing/core", "CertificateArn": "arn:aws:iot:us-east-1:000000000000:cert/aa", "SyncShadow": true}],
  "Devices": [
    {"Id": "pub0", "ThingArn": "arn:aws:iot:us-east-1:000000000000:thing/pub0", "CertificateArn": "arn:aws:iot:us-east-1:000000000000:cert/bb", "SyncShadow": false},
    {"Id": "sub0", "ThingArn": "arn:aws:iot:us-east-1:000000000000:thing/sub0", "CertificateArn": "arn:aws:iot:us-east-1:000000000000:cert/cc", "SyncShadow": false},
    {"Id": "sub1", "ThingArn": "arn:aws:iot:us-east-1:000000000000:thing/sub1", "CertificateArn": "arn:aws:iot:us-east-1:000000000000:cert/dd", "SyncShadow": false}
  ],
  "Subscriptions": [],
  "Functions": [], "Resources": []
}`

func TestRouteMesh(t *testing.T) {
	out, err := withSubscriptions([]byte(groupSample), func(arns map[string]string) ([]subscription, error) {
		return meshRoutes(arns, []string{"pub0"}, []string{"sub0", "sub1"})
	})
	if err != nil {
		t.Fatalf("withSubscriptions: %v", err)
	}
	var g struct {
		GroupId       string
		Cores         []json.RawMessage
		Devices       []json.RawMessage
		Subscriptions []subscription
		Functions     []json.RawMessage
	}
	if err := json.Unmarshal(out, &g); err != nil {
		t.Fatalf("rewritten group.json does not parse: %v\n%s", err, out)
	}
	if g.GroupId != "g1" || len(g.Cores) != 1 || len(g.Devices) != 3 || g.Functions == nil {
		t.Errorf("rewritten group.json lost fields:\n%s", out)
	}
	const arn = "arn:aws:iot:us-east-1:000000000000:thing/"
	want := []subscription{
		{ID: "bench-pub0-sub0", Source: arn + "pub0", Subject: "bench/pub0/#", Target: arn + "sub0"},
		{ID: "bench-pub0-sub1", Source: arn + "pub0", Subject: "bench/pub0/#", Target: arn + "sub1"},
	}
	if len(g.Subscriptions) != len(want) {
		t.Fatalf("Subscriptions = %+v, want %+v", g.Subscriptions, want)
	}
	for i := range want {
		if g.Subscriptions[i] != want[i] {
			t.Errorf("Subscriptions[%d] = %+v, want %+v", i, g.Subscriptions[i], want[i])
		}
	}
	if !strings.Contains(string(out), `"Id": "bench-pub0-sub0"`) {
		t.Errorf("subscriptions are not written with v1 field names:\n%s", out)
	}
}

func TestRouteMeshErrors(t *testing.T) {
	mesh := func(pubs, subs []string) func(map[string]string) ([]subscription, error) {
		return func(arns map[string]string) ([]subscription, error) { return meshRoutes(arns, pubs, subs) }
	}
	tests := []struct {
		name, group string
		route       func(map[string]string) ([]subscription, error)
		wantErr     string
	}{
		{"unknown publisher", groupSample, mesh([]string{"pub9"}, []string{"sub0"}), `no device "pub9"`},
		{"unknown subscriber", groupSample, mesh([]string{"pub0"}, []string{"sub7"}), `no device "sub7"`},
		{"not JSON", "{", mesh(nil, nil), "group.json"},
		{"bad thing ARN", `{"Devices": [{"ThingArn": "arn:aws:iot:us-east-1:0:cert/x"}]}`, mesh(nil, nil), "Devices[0].ThingArn"},
		{"Devices not a list", `{"Devices": {}}`, mesh(nil, nil), "Devices"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := withSubscriptions([]byte(tt.group), tt.route)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// The report names the build it measured: static or cgo, as the binary's
// own build information says, and says so when a file is no Go binary.
func TestDescribeBuild(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("the test binary has no build information")
	}
	want := "CGO_ENABLED="
	for _, s := range info.Settings {
		if s.Key == "CGO_ENABLED" {
			want += s.Value
		}
	}
	notGo := filepath.Join(t.TempDir(), "ggcore")
	if err := os.WriteFile(notGo, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, path, want string }{
		{"a Go binary", self, want},
		{"a script", notGo, "build unknown"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeBuild(tt.path); !strings.HasPrefix(got, tt.want) {
				t.Errorf("describeBuild = %q, want it to start with %q", got, tt.want)
			}
		})
	}
}
