package main

// Image updates (docs/design.md "Firmware updates"): a deployment whose
// group.json carries "Firmware" has its release fetched from the control
// plane, installed into the inactive slot and armed for a trial
// (ota/install); the deployment is reported InProgress and the core asks
// for a reboot. On the trial boot the core runs its health check and
// commits, or asks for a reboot (ggboot falls back after its tries). The
// outcome of a trial, which ggboot or the commit records in the slot
// state, is reported as the deployment's status on the next boot.
//
// How the core reboots: it stops cleanly and exits with exitReboot;
// gginit (PID 1 of the image) syncs and reboots the machine when ggcore
// exits with that status. On a host without gginit the status simply ends
// ggcore, which is what the host tests check.

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/deploy"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/ota/install"
	"github.com/ggcore/ggcore/ota/release"
	"github.com/ggcore/ggcore/ota/slot"
	"github.com/ggcore/ggcore/tpm"
)

// exitReboot is ggcore's exit status that asks gginit to reboot the
// machine (after an image was installed, or a trial boot failed its
// health check).
const exitReboot = 3

// cmdlinePath is the kernel command line, where ggboot names the system
// disk (ggcore.system=), the slot it booted (ggcore.slot=) and a trial
// boot (ggcore.trial=1).
const cmdlinePath = "/proc/cmdline"

// otaUpdater installs the firmware of deployments and commits trial
// boots.
type otaUpdater struct {
	log      *slog.Logger
	sys      *install.System
	deadline time.Duration
	// identity is the core's key, which the health check signs with.
	identity crypto.Signer
	// unusable, when set, is why firmware cannot be installed here (no
	// release keys, no release in the running slot); deployments with
	// firmware fail with it.
	unusable error
	// trialFlag is ggcore.trial=1 on the command line.
	trialFlag bool

	mu sync.Mutex
	// armed is the deployment whose firmware was installed and armed;
	// firmwarePending reboots for it once the deployment is recorded.
	armed, armedVersion, armedSlot string
}

// newOTA returns the updater, or nil when this core has no system disk
// (neither ggcore.ota.systemDisk nor ggcore.system= on the kernel
// command line): then a deployment with firmware fails.
func newOTA(cfg *config.Config, store *keys.Store, identity crypto.Signer, log *slog.Logger) *otaUpdater {
	o := cfg.GGCore.OTA
	cmdline := kernelArgs(cmdlinePath)
	disk := o.SystemDisk
	if disk == "" {
		disk = cmdline["ggcore.system"]
	}
	if disk == "" {
		return nil
	}
	u := &otaUpdater{log: log.With("component", "ota"), identity: identity, trialFlag: cmdline["ggcore.trial"] == "1",
		deadline: time.Duration(orDefault(o.HealthDeadlineSeconds, config.DefaultHealthDeadlineSeconds)) * time.Second}
	u.sys = &install.System{Disk: install.SystemDisk(disk), Log: u.log}
	// ggcore.state= moves the slot state off partition 1 (an SD card whose
	// partition 1 is the boot partition keeps it before the partitions);
	// ggboot reads the same word.
	if loc := cmdline["ggcore.state"]; loc != "" {
		path, offset, err := slot.ParseLocation(loc)
		if err != nil {
			u.unusable = fmt.Errorf("ggcore.state on the kernel command line: %w", err)
			return u
		}
		u.sys.Disk.State, u.sys.Disk.StateOffset = path, offset
	}
	running := o.Slot
	if running == "" {
		running = cmdline["ggcore.slot"]
	}
	if running == "" {
		st, err := u.sys.State()
		if err != nil {
			u.unusable = fmt.Errorf("the running slot is unknown: %w", err)
			return u
		}
		running = st.Active
		u.log.Warn("ggcore.slot= is not on the kernel command line; taking the committed slot as the running one", "slot", running)
	}
	u.sys.Running = running
	patterns := o.ReleaseKeys
	if len(patterns) == 0 {
		patterns = []string{config.DefaultReleaseKeys}
	}
	var keyFiles []string
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		if len(m) == 0 {
			m = []string{p} // LoadVerifier says why it cannot be read
		}
		keyFiles = append(keyFiles, m...)
	}
	v, err := release.LoadVerifier(keyFiles...)
	if err != nil {
		u.unusable = fmt.Errorf("no release keys: %w", err)
		return u
	}
	u.sys.Verifier = v
	h, err := u.sys.RunningHeader()
	if err != nil {
		u.unusable = fmt.Errorf("the running slot %s holds no release these keys verify, so its compatible is unknown: %w", running, err)
	} else {
		u.sys.Compatible = h.Manifest.Compatible
	}
	var t *tpm.TPM
	if tpmPresent(cfg) {
		if t, err = store.TPM(); err != nil {
			u.unusable = fmt.Errorf("the TPM holding the security version counter: %w", err)
			return u
		}
		u.sys.Counter = t
	}
	if h != nil {
		u.logRunningRelease(running, h, t)
	}
	return u
}

// logRunningRelease logs the release the system booted and, with a TPM,
// the boot measurement ggboot extended into PCR 13 beside the value the
// release promises (ggprov release pcr): a difference means the boot path
// is not the one the release was published for.
func (u *otaUpdater) logRunningRelease(running string, h *release.Header, t *tpm.TPM) {
	expected := h.ExpectedPCR13()
	attrs := []any{"slot", running, "version", h.Manifest.Version, "security_version", h.Manifest.SecurityVersion,
		"compatible", h.Manifest.Compatible, "expected_pcr13", hex.EncodeToString(expected[:])}
	if t == nil {
		u.log.Info("running release", attrs...)
		return
	}
	pcr, err := t.ReadPCR(tpm.BootPCR)
	switch {
	case err != nil:
		u.log.Warn("running release; PCR 13 unreadable", append(attrs, "error", err)...)
	case pcr != expected:
		u.log.Warn("running release; PCR 13 differs from the release's expected value (booted without ggboot, or a changed boot path)",
			append(attrs, "pcr13", hex.EncodeToString(pcr[:]))...)
	default:
		u.log.Info("running release; PCR 13 matches the release", append(attrs, "pcr13", hex.EncodeToString(pcr[:]))...)
	}
}

func orDefault(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// tpmPresent reports whether this system has a TPM: ggcore.tpm.device
// (default /dev/tpmrm0) names a device node that exists, or a swtpm
// socket.
func tpmPresent(cfg *config.Config) bool {
	d, err := keyspec.ParseTPMDevice(cfg.GGCore.TPM.Device)
	if err != nil {
		return false
	}
	if d.Network != keyspec.TPMNetworkDevice {
		return true
	}
	_, err = os.Stat(d.Address)
	return err == nil
}

// kernelArgs reads the name=value words of a kernel command line.
func kernelArgs(path string) map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, w := range strings.Fields(string(data)) {
		if k, v, ok := strings.Cut(w, "="); ok {
			out[k] = v
		}
	}
	return out
}

// requestReboot asks main to stop the core and exit with exitReboot.
func (c *core) requestReboot(reason string) {
	select {
	case c.reboot <- reason:
	default:
	}
}

// otaThenDeploy runs when the core has started: on a trial boot the
// health check and the commit (or a reboot), then the report of a trial's
// outcome, then the deployer.
func (c *core) otaThenDeploy(ctx context.Context, cloud *controlplane.Client) {
	if u := c.ota; u != nil && u.sys.Running != "" {
		if !c.trialBoot(ctx, cloud) {
			return
		}
		if cloud != nil {
			c.background.Go(func() { c.reportTrialResult(ctx, cloud) })
		}
	}
	if c.deployer != nil {
		c.deployer.Run(ctx)
	}
}

// trialBoot commits a healthy trial boot; it reports false when the core
// is rebooting instead.
func (c *core) trialBoot(ctx context.Context, cloud *controlplane.Client) bool {
	u := c.ota
	st, err := u.sys.State()
	if err != nil {
		u.log.Error("cannot read the slot state", "error", err)
		return true
	}
	if !install.OnTrial(st, u.sys.Running) {
		if u.trialFlag {
			u.log.Warn("ggcore.trial=1, but the slot state has no trial of the running slot", "running", u.sys.Running, "state_active", st.Active, "state_trial", st.Trial)
		}
		return true
	}
	u.log.Info("trial boot: checking health before committing", "slot", u.sys.Running, "version", st.TrialVersion,
		"tries_left", st.TriesLeft, "deadline", u.deadline)
	_, err = u.sys.Commit(ctx, func(ctx context.Context) error { return c.health(ctx, cloud) }, u.deadline)
	switch {
	case err == nil:
		u.log.Info("trial boot committed", "slot", u.sys.Running, "version", st.TrialVersion)
		return true
	case ctx.Err() != nil:
		return false
	default:
		u.log.Error("trial boot unhealthy; rebooting (ggboot falls back to the committed slot after its tries)", "error", err)
		c.requestReboot("trial boot unhealthy: " + err.Error())
		return false
	}
}

// health is the trial boot's check: the broker serves TLS on loopback,
// the core's key signs, and the control plane answers.
func (c *core) health(ctx context.Context, cloud *controlplane.Client) error {
	if err := c.brokerServing(ctx); err != nil {
		return fmt.Errorf("broker not serving: %w", err)
	}
	digest := sha256.Sum256([]byte("ggcore health check"))
	if _, err := c.ota.identity.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		return fmt.Errorf("the core's key does not sign: %w", err)
	}
	if cloud != nil {
		if _, err := cloud.CurrentDeployment(ctx); err != nil && !errors.Is(err, controlplane.ErrNoDeployment) {
			return fmt.Errorf("control plane not reached: %w", err)
		}
	}
	return nil
}

// brokerServing opens a TLS connection to the broker on loopback and
// succeeds once the broker presented its server certificate (the
// connection has no client certificate, so the broker ends it then).
func (c *core) brokerServing(ctx context.Context) error {
	port := c.broker.Addr().(*net.TCPAddr).Port
	host := "127.0.0.1"
	if bind := c.cfg.GGCore.LocalMQTTBind; bind != "" && bind != "0.0.0.0" && bind != "::" {
		host = bind
	}
	served := false
	d := tls.Dialer{Config: &tls.Config{
		InsecureSkipVerify: true, // only whether a certificate is served is checked
		VerifyConnection: func(cs tls.ConnectionState) error {
			served = len(cs.PeerCertificates) > 0
			return nil
		},
	}, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	if conn != nil {
		conn.Close()
	}
	if served {
		return nil
	}
	if err == nil {
		err = errors.New("no server certificate")
	}
	return err
}

// reportTrialResult reports the outcome of the last trial as its
// deployment's status, again every 30 s until the control plane takes it,
// then clears it from the slot state.
func (c *core) reportTrialResult(ctx context.Context, cloud *controlplane.Client) {
	u := c.ota
	for {
		st, err := u.sys.State()
		if err != nil || st.Result == nil {
			return
		}
		r := st.Result
		msg := r.Reason
		if r.Status == slot.StatusSuccess && msg == "" {
			msg = fmt.Sprintf("release %s committed in slot %s", r.Version, r.Slot)
		}
		c.groupMu.Lock()
		ref := controlplane.DeploymentRef{GroupId: c.groupID, DeploymentId: r.Deployment}
		c.groupMu.Unlock()
		if r.Deployment == "" {
			err = errors.New("the trial names no deployment")
		} else {
			err = cloud.UpdateDeploymentStatus(ctx, ref, c.cfg.CoreThing.ThingArn, r.Status, msg)
		}
		if err == nil || controlplane.Refused(err) || r.Deployment == "" {
			if err != nil {
				u.log.Warn("the control plane refused the trial's outcome; dropping it", "deployment", r.Deployment, "error", err)
			} else {
				u.log.Info("trial outcome reported", "deployment", r.Deployment, "status", r.Status, "message", msg)
			}
			if err := u.sys.ClearResult(r); err != nil {
				u.log.Error("cannot clear the reported trial outcome", "error", err)
			}
			return
		}
		u.log.Warn("cannot report the trial's outcome; will try again", "deployment", r.Deployment, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
	}
}

// prepareFirmware is the deployer's Prepare step for "Firmware": fetch
// the release and install it into the inactive slot, armed. A release
// already running is left alone. Abort disarms the slot (the rest of the
// deployment failed); the reboot comes with firmwarePending.
func (c *core) prepareFirmware(cloud *controlplane.Client) func(context.Context, controlplane.DeploymentRef, []byte, checkedGroup) (func(), func(), error) {
	return func(ctx context.Context, ref controlplane.DeploymentRef, _ []byte, g checkedGroup) (func(), func(), error) {
		fw := g.g.Firmware
		nothing := func() {}
		if fw == nil {
			return nothing, nothing, nil
		}
		u := c.ota
		switch {
		case u == nil:
			return nil, nil, errors.New("firmware: this core has no system disk (ggcore.system= on the kernel command line, or ggcore.ota.systemDisk)")
		case u.unusable != nil:
			return nil, nil, fmt.Errorf("firmware: %w", u.unusable)
		}
		if u.running(fw) {
			u.log.Info("the deployment's release is the running one; nothing to install", "sha256", fw.Sha256)
			return nothing, nothing, nil
		}
		res, err := c.installFirmware(ctx, cloud, ref, fw)
		if err != nil {
			return nil, nil, err
		}
		u.mu.Lock()
		u.armed, u.armedVersion, u.armedSlot = ref.DeploymentId, res.Version, res.Slot
		u.mu.Unlock()
		abort := func() {
			u.mu.Lock()
			u.armed = ""
			u.mu.Unlock()
			if err := u.disarm(res.Slot); err != nil {
				u.log.Error("cannot disarm the installed slot", "slot", res.Slot, "error", err)
			}
		}
		return nothing, abort, nil
	}
}

// installFirmware streams the release from the control plane into
// Install, reporting progress as InProgress.
func (c *core) installFirmware(ctx context.Context, cloud *controlplane.Client, ref controlplane.DeploymentRef, fw *config.Firmware) (*install.Result, error) {
	u := c.ota
	pr, pw := io.Pipe()
	fetched := make(chan error, 1)
	go func() {
		n, err := cloud.GetFunctionCode(ctx, ref, fw.Sha256, fw.Size, pw)
		if err == nil && n != fw.Size {
			err = fmt.Errorf("size mismatch: got %d bytes, the deployment says %d", n, fw.Size)
		}
		pw.CloseWithError(err)
		fetched <- err
	}()
	lastPct := -1
	res, err := u.sys.Install(ctx, pr, install.Options{
		Deployment: ref.DeploymentId, SHA256: fw.Sha256, Size: fw.Size,
		Progress: func(written, total int64) {
			pct := int(written * 100 / total)
			if pct/25 == lastPct/25 && written != total {
				return
			}
			lastPct = pct
			msg := fmt.Sprintf("firmware: writing the inactive slot: %d%% (%d of %d bytes)", pct, written, total)
			if err := cloud.UpdateDeploymentStatus(ctx, ref, c.cfg.CoreThing.ThingArn, controlplane.StatusInProgress, msg); err != nil {
				u.log.Warn("could not report progress", "error", err)
			}
		},
	})
	pr.CloseWithError(errors.New("install finished"))
	ferr := <-fetched
	if err == nil {
		return res, nil
	}
	var refused bool
	for _, e := range []error{release.ErrBadSignature, release.ErrUnknownKey, release.ErrMalformed, release.ErrIncompatible,
		release.ErrDowngrade, release.ErrHashMismatch, release.ErrNoSpace, install.ErrTrialRunning} {
		refused = refused || errors.Is(err, e)
	}
	switch {
	case ferr != nil && !refused && (controlplane.Refused(ferr) || errors.Is(ferr, controlplane.ErrTooLarge)):
		return nil, fmt.Errorf("firmware: fetch: %w", ferr)
	case ferr != nil && !refused:
		return nil, deploy.Retry(fmt.Errorf("firmware: fetch: %w", ferr))
	}
	return nil, fmt.Errorf("firmware: %w", err)
}

// running reports whether fw is the release in the running slot.
func (u *otaUpdater) running(fw *config.Firmware) bool {
	h, err := u.sys.RunningHeader()
	if err != nil || h.Size+h.PayloadSize() != fw.Size {
		return false
	}
	f, err := os.Open(u.sys.Disk.Slot(u.sys.Running))
	if err != nil {
		return false
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, io.LimitReader(f, fw.Size)); err != nil {
		return false
	}
	return hex.EncodeToString(sum.Sum(nil)) == fw.Sha256
}

// disarm cancels the trial of slot target armed by this run.
func (u *otaUpdater) disarm(target string) error {
	store, err := u.sys.Disk.OpenState()
	if err != nil {
		return err
	}
	defer store.Close()
	st, err := store.Load()
	if err != nil {
		return err
	}
	if st.Trial != target {
		return nil
	}
	st.Trial, st.TriesLeft, st.Deployment, st.TrialVersion, st.TrialSecurityVersion = "", 0, "", "", 0
	return store.Save(st)
}

// firmwarePending is the deployer's Pending: a deployment whose firmware
// was armed stays InProgress, and the core reboots into the new slot once
// that is reported.
func (c *core) firmwarePending(ref controlplane.DeploymentRef) (string, func()) {
	u := c.ota
	if u == nil {
		return "", nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.armed != ref.DeploymentId || u.armed == "" {
		return "", nil
	}
	msg := fmt.Sprintf("firmware: release %s installed in slot %s; rebooting to try it", u.armedVersion, u.armedSlot)
	u.armed = ""
	return msg, func() { c.requestReboot(msg) }
}
