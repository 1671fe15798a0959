package pid1

import (
	"bytes"
	"regexp"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	args := ParseCmdline("console=ttyS0 panic=-1 quiet ggcore.disk=/dev/vdb ggcore.gw= ggcore.slot=A ggcore.slot=B\n")
	tests := []struct{ key, def, want string }{
		{"console", "", "ttyS0"},
		{"ggcore.disk", "/dev/vda", "/dev/vdb"},
		{"ggcore.gw", "10.0.2.2", "10.0.2.2"}, // empty: the default
		{"quiet", "no", "no"},                 // no '=': not a setting
		{"ggcore.slot", "", "B"},              // the last word wins
		{"absent", "d", "d"},
	}
	for _, tt := range tests {
		if got := Setting(args, tt.key, tt.def); got != tt.want {
			t.Errorf("Setting(%s) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestSay(t *testing.T) {
	var out bytes.Buffer
	Console{Name: "ggboot", Out: &out}.Say("slot %s", "A")
	if !regexp.MustCompile(`^\[ *\d+\.\d{6}\] ggboot: slot A\n$`).Match(out.Bytes()) {
		t.Errorf("console line %q", out.String())
	}
}
