package qemu

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// TestImageClock boots the image with its clock in 1970 and DHCP (the
// default network): gginit raises the clock to the image's build time
// and gets 10.0.2.15 from QEMU's DHCP server; ggcore asks the test's NTP
// server (on the host's 127.0.0.1, the guest's 10.0.2.2) and steps the
// clock; a device then connects, without a restart. While the NTP server
// is silent and the clock is at the build time, a device whose
// certificate is younger than the build is refused.
func TestImageClock(t *testing.T) {
	initrd, kernel := image(t, "tpm", "amd64")
	ntp := testtool.StartNTP(t, 0)
	ntp.SetSilent(true)
	b := provision(t, "file")
	disk := b.disk(t, func(cfg map[string]any) {
		cfg["ggcore"].(map[string]any)["time"] = map[string]any{
			"setClock":   true,
			"ntpServers": []any{fmt.Sprintf("10.0.2.2:%d", ntp.Port)},
		}
	})
	v := boot(t, "amd64", initrd, kernel, disk, "", "GGCORE_QEMU_ARGS=-rtc base=1970-01-02")
	v.waitFor(t, "ggcore ready", bootTimeout)
	console := v.console.String()
	m := regexp.MustCompile(`gginit: clock: (\S+) was before the image's build time; set to (\S+)`).FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("gginit did not raise the 1970 clock to the build time:\n%s", console)
	}
	if !strings.HasPrefix(m[1], "1970-") {
		t.Errorf("the guest's clock started at %s, not in 1970 (QEMU's -rtc base)", m[1])
	}
	built, err := time.Parse(time.RFC3339, m[2])
	if err != nil {
		t.Fatal(err)
	}
	// The network comes up once ggcore says it is ready (--ready-fd).
	v.waitFor(t, "gginit: network: eth0 10.0.2.15/24 by DHCP", bootTimeout)
	assertNetworkAfterReady(t, v.console.String())

	// Before the sync: the clock is at the build time, the NTP server is
	// asked and stays silent.
	if !testtool.Poll(guestTimeout, func() bool { return ntp.Requests() > 0 }) {
		t.Fatalf("ggcore never asked the NTP server:\n%s", v.console)
	}
	if sensor := certNotBefore(t, filepath.Join(b.dir, "devices", "sensor.cert.pem")); built.Before(sensor) {
		ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
		out, err := exec.CommandContext(ctx, "mosquitto_pub", append(b.mosq(v, "sensor"), "-t", "sensors/sensor/early", "-m", "x")...).CombinedOutput()
		cancel()
		if err == nil {
			t.Fatalf("a device certificate valid from %s was accepted with the guest's clock at the build time %s:\n%s",
				sensor.UTC().Format(time.RFC3339), built.Format(time.RFC3339), out)
		}
	} else {
		t.Logf("the build time %s is after the device certificate's start %s: no refusal to show before the sync",
			built.Format(time.RFC3339), sensor.UTC().Format(time.RFC3339))
	}
	if strings.Contains(v.console.String(), "clock synchronised") {
		t.Fatalf("ggcore says the clock is synchronised while the NTP server is silent:\n%s", v.console)
	}

	ntp.SetSilent(false)
	v.waitFor(t, "clock synchronised", guestTimeout)
	line := consoleLine(v.console.String(), "clock synchronised")
	for _, want := range []string{"source=ntp", "server=10.0.2.2:", "stepped=true"} {
		if !strings.Contains(line, want) {
			t.Errorf("the sync line lacks %q: %s", want, line)
		}
	}
	v.firstConnection(t, b)
	assertRouting(t, b, v)
	for _, l := range strings.Split(v.console.String(), "\n") {
		if strings.Contains(l, "clock") || strings.Contains(l, "network:") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

// TestImageStaticNetwork boots with a static address on the kernel
// command line instead of DHCP, and a device connects.
func TestImageStaticNetwork(t *testing.T) {
	initrd, kernel := image(t, "tpm", "amd64")
	b := provision(t, "file")
	v := boot(t, "amd64", initrd, kernel, b.disk(t, nil), "",
		"GGCORE_QEMU_APPEND=ggcore.ip=10.0.2.15/24 ggcore.gw=10.0.2.2 ggcore.dns=10.0.2.3")
	v.waitFor(t, "ggcore ready", bootTimeout)
	v.waitFor(t, "gginit: network: eth0 10.0.2.15/24 (static), gateway 10.0.2.2, name servers 10.0.2.3", bootTimeout)
	c := v.console.String()
	if strings.Contains(c, "by DHCP") {
		t.Errorf("DHCP ran despite the static address:\n%s", c)
	}
	assertNetworkAfterReady(t, c)
	v.firstConnection(t, b)
}

// assertNetworkAfterReady checks that gginit brought the network up
// because ggcore said it was ready, after its "ggcore ready" line: not
// beside its start, where the DHCP client takes CPU from it, and not
// after gginit's bound on the wait.
func assertNetworkAfterReady(t *testing.T, console string) {
	t.Helper()
	ready, up := strings.Index(console, "ggcore ready"), strings.Index(console, "gginit: bringing the network up: ggcore is ready")
	if ready < 0 || up < ready {
		t.Errorf("gginit did not bring the network up on ggcore's word that it was ready:\n%s", console)
	}
}

// certNotBefore is the start of validity of the certificate in a PEM file.
func certNotBefore(t testing.TB, path string) time.Time {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c.NotBefore
}

// consoleLine is the first console line that contains s.
func consoleLine(console, s string) string {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
