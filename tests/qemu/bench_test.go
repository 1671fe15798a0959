package qemu

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkBoot boots the tpm image (TCG, keys in swtpm, ggcore's
// kernel) b.N times on each architecture and reports the medians of: QEMU
// start to `ggcore ready`, QEMU start to the first accepted device
// connection, and gginit's start to `ggcore ready`; and ggcore's resident
// memory in the VM as the console reports it. Run it with -benchtime 5x.
func BenchmarkBoot(b *testing.B) {
	for _, arch := range []string{"amd64", "arm64"} {
		b.Run(arch, func(b *testing.B) { benchmarkBoot(b, arch) })
	}
}

func benchmarkBoot(b *testing.B, arch string) {
	initrd, kernel := image(b, "tpm", arch)
	bu := provision(b, "tpm")
	disk := bu.disk(b, nil)
	var ready, connected, initToReady []time.Duration
	rss := ""
	for b.Loop() {
		v := boot(b, arch, initrd, kernel, disk, bu.tpm.Dir)
		connected = append(connected, v.firstConnection(b, bu))
		initSeen := v.waitFor(b, "gginit starting", bootTimeout)
		r := v.waitFor(b, "ggcore ready", bootTimeout)
		ready = append(ready, r)
		initToReady = append(initToReady, r-initSeen)
		v.waitFor(b, "ggcore resident memory", time.Minute)
		for _, l := range strings.Split(v.console.String(), "\n") {
			if i := strings.Index(l, "ggcore resident memory"); i >= 0 {
				rss = strings.TrimSpace(l[i:])
			}
		}
		v.stop()
	}
	b.ReportMetric(float64(median(ready).Milliseconds()), "ms-to-ready")
	b.ReportMetric(float64(median(connected).Milliseconds()), "ms-to-first-connection")
	b.ReportMetric(float64(median(initToReady).Milliseconds()), "ms-init-to-ready")
	b.Logf("%s", rss)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
