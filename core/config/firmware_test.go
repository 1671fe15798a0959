package config

import (
	"strings"
	"testing"
)

func TestParseGroupFirmware(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	g, err := ParseGroup(parseDoc(t, goldenGroup).set("Firmware", map[string]any{"Sha256": sum, "Size": 1234}).bytes())
	if err != nil {
		t.Fatalf("ParseGroup with Firmware: %v", err)
	}
	if g.Firmware == nil || g.Firmware.Sha256 != sum || g.Firmware.Size != 1234 {
		t.Fatalf("Firmware = %+v", g.Firmware)
	}
	if g, err := ParseGroup([]byte(goldenGroup)); err != nil || g.Firmware != nil {
		t.Fatalf("a group without Firmware: %+v, %v", g, err)
	}
	for _, tt := range []struct {
		fw           map[string]any
		path, reason string
	}{
		{map[string]any{"Sha256": "AB" + sum[2:], "Size": 1}, "Firmware.Sha256", "64 lowercase hex"},
		{map[string]any{"Sha256": sum, "Size": 0}, "Firmware.Size", "positive"},
		{map[string]any{"Sha256": sum}, "Firmware.Size", "required"},
		{map[string]any{"Sha256": sum, "Size": 1, "Url": "x"}, "Firmware.Url", "unknown"},
	} {
		_, err := ParseGroup(parseDoc(t, goldenGroup).set("Firmware", tt.fw).bytes())
		wantProblem(t, err, tt.path, tt.reason)
	}
}
