package main

import (
	"strings"
	"testing"
	"time"
)

func TestPlanNetwork(t *testing.T) {
	tests := []struct {
		name, cmdline string
		dhcp          bool
		addr, gw, dns string // the static plan, as strings
		wantErr       string
	}{
		{name: "nothing: DHCP", cmdline: "console=ttyS0 quiet", dhcp: true},
		{name: "dhcp said", cmdline: "ggcore.ip=dhcp", dhcp: true},
		{name: "static as QEMU's user network", cmdline: "ggcore.ip=10.0.2.15/24 ggcore.gw=10.0.2.2 ggcore.dns=10.0.2.3",
			addr: "10.0.2.15/24", gw: "10.0.2.2", dns: "10.0.2.3"},
		{name: "static without a gateway", cmdline: "ggcore.ip=192.168.7.2/24", addr: "192.168.7.2/24"},
		{name: "two name servers", cmdline: "ggcore.ip=192.168.7.2/24 ggcore.dns=192.168.7.1,9.9.9.9",
			addr: "192.168.7.2/24", dns: "192.168.7.1,9.9.9.9"},
		{name: "no prefix", cmdline: "ggcore.ip=10.0.2.15", wantErr: "want an address with its prefix"},
		{name: "bad gateway", cmdline: "ggcore.ip=10.0.2.15/24 ggcore.gw=router", wantErr: "ggcore.gw=router is not an IP address"},
		{name: "bad name server", cmdline: "ggcore.ip=10.0.2.15/24 ggcore.dns=10.0.2.3,ns", wantErr: `"ns" is not an IP address`},
		{name: "gateway with DHCP", cmdline: "ggcore.gw=10.0.2.2", wantErr: "go with a static ggcore.ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := planNetwork(parseCmdline(tt.cmdline))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("planNetwork: err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.dhcp != tt.dhcp {
				t.Fatalf("dhcp = %v, want %v", p.dhcp, tt.dhcp)
			}
			if tt.dhcp {
				return
			}
			gw := ""
			if p.gw != nil {
				gw = p.gw.String()
			}
			if got := p.addr.IPNet.String(); got != tt.addr || gw != tt.gw || ipList(p.dns) != orNone(tt.dns) {
				t.Errorf("plan = %s gw %q dns %s; want %s gw %q dns %s", got, gw, ipList(p.dns), tt.addr, tt.gw, orNone(tt.dns))
			}
		})
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func TestParseBuildTime(t *testing.T) {
	got, err := parseBuildTime("1796490670\n")
	if err != nil || !got.Equal(time.Unix(1796490670, 0)) {
		t.Errorf("parseBuildTime = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "soon", "-1"} {
		if _, err := parseBuildTime(bad); err == nil {
			t.Errorf("parseBuildTime(%q) accepted", bad)
		}
	}
}
