package qemu

import (
	"context"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkBoot boots the tpm image (TCG, keys in swtpm, ggcore's
// kernel, the data disk kept between boots) b.N times on each
// architecture and reports the medians of the boot's stages, each from
// the end of the one before:
//
//	ms-firmware          QEMU start to the kernel's start (firmware, loading)
//	ms-kernel            the kernel's start to gginit's start
//	ms-init-to-ready     gginit's start to `ggcore ready`
//	ms-ready-to-conn     `ggcore ready` to the first accepted device connection
//
// and the totals ms-to-ready and ms-to-first-connection (from QEMU's
// start); and ggcore's resident memory in the VM as the console reports
// it. The kernel's start is when gginit's first console line was seen
// less the uptime it prints. Run it with -benchtime 5x (make bench):
//
//	go test ./tests/qemu -run '^$' -bench Boot -benchtime 5x
func BenchmarkBoot(b *testing.B) {
	for _, arch := range []string{"amd64", "arm64"} {
		b.Run(arch, func(b *testing.B) { benchmarkBoot(b, arch) })
	}
}

// bootTimes are one boot's moments, from QEMU's start.
type bootTimes struct {
	kernel, init, ready, connected time.Duration
}

func benchmarkBoot(b *testing.B, arch string) {
	initrd, kernel := image(b, "tpm", arch)
	bu := provision(b, "tpm")
	disk := bu.disk(b, nil)
	var boots []bootTimes
	rss := ""
	for b.Loop() {
		v := boot(b, arch, initrd, kernel, disk, bu.tpm.Dir)
		var bt bootTimes
		bt.connected = firstAccepted(b, v, bu)
		bt.init = v.waitFor(b, "gginit starting", bootTimeout)
		bt.ready = v.waitFor(b, "ggcore ready", bootTimeout)
		bt.kernel = bt.init - guestUptime(b, v.console.String(), "gginit starting")
		boots = append(boots, bt)
		if rss == "" { // once: it comes 10 s after ggcore's start
			v.waitFor(b, "ggcore resident memory", time.Minute)
			for _, l := range strings.Split(v.console.String(), "\n") {
				if i := strings.Index(l, "ggcore resident memory"); i >= 0 {
					rss = strings.TrimSpace(l[i:])
				}
			}
		}
		v.stop()
	}
	stage := func(unit string, f func(bootTimes) time.Duration) {
		d := make([]time.Duration, len(boots))
		for i, bt := range boots {
			d[i] = f(bt)
		}
		b.ReportMetric(float64(median(d).Milliseconds()), unit)
	}
	stage("ms-firmware", func(bt bootTimes) time.Duration { return bt.kernel })
	stage("ms-kernel", func(bt bootTimes) time.Duration { return bt.init - bt.kernel })
	stage("ms-init-to-ready", func(bt bootTimes) time.Duration { return bt.ready - bt.init })
	stage("ms-ready-to-conn", func(bt bootTimes) time.Duration { return bt.connected - bt.ready })
	stage("ms-to-ready", func(bt bootTimes) time.Duration { return bt.ready })
	stage("ms-to-first-connection", func(bt bootTimes) time.Duration { return bt.connected })
	for i, bt := range boots {
		b.Logf("%s boot %d: kernel %v, gginit %v, ready %v, first connection %v", arch, i+1,
			bt.kernel.Round(time.Millisecond), bt.init.Round(time.Millisecond), bt.ready.Round(time.Millisecond), bt.connected.Round(time.Millisecond))
	}
	b.Logf("%s", rss)
}

// firstAccepted returns when the first device connection (mosquitto_pub
// as sensor) was accepted, counted from QEMU's start. Attempts begin
// when the console says `ggcore ready` and gginit has said how the
// network came up (the guest has its address): one every 500 ms without
// waiting for those under way, the first to succeed counting. Earlier
// attempts would measure QEMU's user network instead: it accepts on the
// host at once, holds the connection while the guest has no address or
// listener, retries with backoff of seconds, and delivers the dead
// client's TLS hello later, whose handshake then occupies the TPM.
func firstAccepted(t testing.TB, v *vm, b *bundle) time.Duration {
	t.Helper()
	deadline := time.Now().Add(bootTimeout)
	for {
		_, ready := v.console.seenAt("ggcore ready")
		_, addressed := v.console.seenAt("gginit: network:")
		if ready && addressed {
			break
		}
		select {
		case <-v.exited:
			t.Fatalf("QEMU exited before ggcore was ready:\n%s", v.console)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ggcore not ready with an address within %v:\n%s", bootTimeout, v.console)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	accepted := make(chan time.Duration, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		wg.Go(func() {
			if exec.CommandContext(ctx, "mosquitto_pub", append(b.mosq(v, "sensor"), "-t", "sensors/sensor/boot", "-m", "up")...).Run() == nil {
				select {
				case accepted <- time.Since(v.started):
				default:
				}
			}
		})
		select {
		case d := <-accepted:
			return d
		case <-v.exited:
			t.Fatalf("QEMU exited before a device connection was accepted:\n%s", v.console)
		case <-ctx.Done():
			t.Fatalf("no device connection accepted within %v of ggcore ready:\n%s", guestTimeout, v.console)
		case <-tick.C:
		}
	}
}

// consoleUptime matches a console line's "[  1.234567]" uptime prefix.
var consoleUptime = regexp.MustCompile(`\[\s*(\d+\.\d+)\]`)

// guestUptime returns the uptime printed on the first console line that
// holds want (gginit prefixes its lines with it).
func guestUptime(t testing.TB, console, want string) time.Duration {
	t.Helper()
	for _, l := range strings.Split(console, "\n") {
		if !strings.Contains(l, want) {
			continue
		}
		if m := consoleUptime.FindStringSubmatch(l); m != nil {
			s, err := strconv.ParseFloat(m[1], 64)
			if err == nil {
				return time.Duration(s * float64(time.Second))
			}
		}
		break
	}
	t.Fatalf("no console line with an uptime says %q:\n%s", want, console)
	return 0
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
