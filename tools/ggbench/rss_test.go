package main

import (
	"os"
	"strings"
	"testing"
)

const statusSample = `Name:	ggcore
Umask:	0022
State:	S (sleeping)
VmPeak:	 1260000 kB
VmHWM:	   68812 kB
VmRSS:	   68812 kB
RssAnon:	   52000 kB
RssFile:	   16812 kB
RssShmem:	       0 kB
Threads:	9
`

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    memory
		wantErr string
	}{
		{"proc status", statusSample, memory{RSS: 68812 << 10, Peak: 68812 << 10, Anon: 52000 << 10, File: 16812 << 10}, ""},
		{"RSS below peak", "VmHWM:\t200 kB\nVmRSS:\t100 kB\n", memory{RSS: 100 << 10, Peak: 200 << 10}, ""},
		{"kernel thread has no Vm lines", "Name:\tkthreadd\nState:\tS\n", memory{}, "no VmRSS/VmHWM"},
		{"only RSS", "VmRSS:\t100 kB\n", memory{}, "no VmRSS/VmHWM"},
		{"wrong unit", "VmRSS:\t100 MB\nVmHWM:\t1 kB\n", memory{}, `VmRSS: "100 MB"`},
		{"not a number", "VmRSS:\tlots kB\nVmHWM:\t1 kB\n", memory{}, `VmRSS: "lots"`},
		{"negative", "VmRSS:\t-1 kB\nVmHWM:\t1 kB\n", memory{}, `VmRSS: "-1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStatus error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseStatus: %v", err)
			}
			if got != tt.want {
				t.Errorf("parseStatus = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadMemoryOfThisProcess(t *testing.T) {
	m, err := readMemory(os.Getpid())
	if err != nil {
		t.Fatalf("readMemory(self): %v", err)
	}
	if m.RSS <= 0 || m.Peak < m.RSS {
		t.Errorf("readMemory(self) = %+v, want 0 < RSS <= Peak", m)
	}
	if _, err := readMemory(-1); err == nil {
		t.Error("readMemory(-1) succeeded, want an error")
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add(statusSample)
	f.Add("VmRSS:\t1 kB\nVmHWM:\t2 kB\n")
	f.Add("VmRSS:")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseStatus(strings.NewReader(s))
		if err == nil && (m.RSS < 0 || m.Peak < 0) {
			t.Errorf("parseStatus(%q) = %+v: negative size without error", s, m)
		}
	})
}
