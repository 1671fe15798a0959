package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/cli"
	"github.com/ggcore/ggcore/tools/ggcloud/admin"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// corePolicy is Greengrass v1's "Minimal AWS IoT Policy for the AWS IoT
// Greengrass Core Device", with region, account-id, core-name and
// group-id to fill in (fmt verbs, in that order of appearance).
const corePolicy = `{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":["iot:Connect"],"Resource":["*"]},
 {"Effect":"Allow","Action":["iot:Publish","iot:Subscribe","iot:Receive"],"Resource":[
  "arn:aws:iot:{region}:{account}:topicfilter/$aws/things/{core}-*",
  "arn:aws:iot:{region}:{account}:topic/$aws/things/{core}-*"]},
 {"Effect":"Allow","Action":["iot:GetThingShadow","iot:UpdateThingShadow","iot:DeleteThingShadow"],"Resource":["arn:aws:iot:{region}:{account}:thing/{core}-*"]},
 {"Effect":"Allow","Action":["greengrass:AssumeRoleForGroup","greengrass:CreateCertificate"],"Resource":["*"]},
 {"Effect":"Allow","Action":["greengrass:GetDeployment"],"Resource":["arn:aws:greengrass:{region}:{account}:/greengrass/groups/{group}/deployments/*"]},
 {"Effect":"Allow","Action":["greengrass:GetDeploymentArtifacts"],"Resource":["arn:aws:greengrass:{region}:{account}:/greengrass/groups/{group}/deployments/*"]},
 {"Effect":"Allow","Action":["greengrass:UpdateCoreDeploymentStatus"],"Resource":["arn:aws:greengrass:{region}:{account}:/greengrass/groups/{group}/deployments/*/cores/arn%3Aaws%3Aiot%3A{region}%3A{account}%3Athing%2F{core}"]},
 {"Effect":"Allow","Action":["greengrass:GetConnectivityInfo","greengrass:UpdateConnectivityInfo"],"Resource":["arn:aws:iot:{region}:{account}:thing/{core}"]}
]}`

// devicePolicy lets a device discover its own groups and nothing else.
const devicePolicy = `{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":["greengrass:Discover"],"Resource":["arn:aws:iot:{region}:{account}:thing/${iot:Connection.Thing.ThingName}"]}
]}`

// fillPolicy fills a policy template's placeholders.
func fillPolicy(tmpl, region, account, core, group string) []byte {
	return []byte(strings.NewReplacer("{region}", region, "{account}", account, "{core}", core, "{group}", group).Replace(tmpl))
}

// runRegister puts a bundle into a ggcloud: the core and its devices as
// things with their certificates, v1's minimal core policy on the core's
// certificate (policy <core>-policy), a discovery-only policy on the
// devices' (<group>-devices), and the group with its group CA, devices
// and subscriptions. It reaches ggcloud through its data directory (the
// admin socket of a running ggcloud, or the store itself). With
// --ggcloud HOST:PORT it points config.json's ggHost and ggHttpPort at it,
// and with --iot HOST:PORT its iotHost and iotMqttPort (the upstream
// MQTT broker).
// Running it again is harmless.
func runRegister(ctx context.Context, inv *cli.Invocation) error {
	fs := inv.Flags
	dir := fs.String("dir", "", "bundle directory written by ggprov init")
	data := fs.String("ggcloud-data", "", "ggcloud's data directory (ggcloud --data)")
	endpoint := fs.String("ggcloud", "", "HOST:PORT the core reaches ggcloud at; written into config.json (coreThing.ggHost, ggHttpPort)")
	iot := fs.String("iot", "", "HOST:PORT of the upstream MQTT broker (ggcloud serve --mqtt-listen, or AWS IoT Core); written into config.json (coreThing.iotHost, iotMqttPort)")
	expiry := fs.Int64("certificate-expiry-ms", 0, "MQTT server certificate validity in ms (default: the bundle group's CertificateExpiryInMilliseconds)")
	deploy := fs.Bool("deploy", false, "also deploy the group (ggcloud group deploy)")
	if _, err := inv.Parse("", 0, 0); err != nil {
		return err
	}
	if *dir == "" || *data == "" {
		return usagef("--dir and --ggcloud-data are required")
	}
	const maxExpiryMs = 30 * 24 * 3600 * 1000
	if *expiry < 0 || *expiry > maxExpiryMs {
		return usagef("--certificate-expiry-ms %d: want at most %d (30 days)", *expiry, maxExpiryMs)
	}
	var edits []configEdit // coreThing fields to set in config.json
	for _, e := range []struct {
		flag, value, host, port, example string
	}{
		{"ggcloud", *endpoint, "ggHost", "ggHttpPort", "127.0.0.1:8443"},
		{"iot", *iot, "iotHost", "iotMqttPort", "127.0.0.1:8884"},
	} {
		if e.value == "" {
			continue
		}
		h, p, err := net.SplitHostPort(e.value)
		n, perr := strconv.Atoi(p)
		if err != nil || perr != nil || n < 1 || n > 65535 || !validServerName(h) {
			return usagef("--%s %q: want HOST:PORT, such as %s", e.flag, e.value, e.example)
		}
		edits = append(edits, configEdit{[]string{"coreThing", e.host}, h}, configEdit{[]string{"coreThing", e.port}, n})
	}
	configPath := filepath.Join(*dir, "config.json")
	cfg, err := config.LoadConfig(configPath)
	if err != nil {
		return err
	}
	g, err := config.LoadGroup(cfg.GroupPath())
	if err != nil {
		return err
	}
	region, account, err := regionAccount(cfg.CoreThing.ThingArn)
	if err != nil {
		return fmt.Errorf("coreThing.thingArn: %w", err)
	}
	if *expiry == 0 {
		*expiry = g.CertificateExpiryInMilliseconds
	}
	if *expiry < 7*24*3600*1000 {
		if *deploy {
			return usagef("--certificate-expiry-ms %d is below v1's 7 days: such a group can be registered for tests but not deployed", *expiry)
		}
		fmt.Fprintf(inv.Stderr, "ggprov: register: server certificates valid %d ms, below v1's 7 days: ggcloud signs them only when started with --test-min-validity\n", *expiry)
	}
	groupCA, err := os.ReadFile(filepath.Join(*dir, "certs", "group-ca.pem"))
	if err != nil {
		return fmt.Errorf("group CA: %w", err)
	}
	groupCAKey, err := os.ReadFile(filepath.Join(*dir, "certs", "group-ca.key"))
	if err != nil {
		return fmt.Errorf("group CA key: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cloud, err := admin.Open(*data)
	if err != nil {
		return err
	}
	defer cloud.Close()
	if _, err := cloud.UseIdentity(ctx, region, account); err != nil {
		return fmt.Errorf("the bundle's ARNs (region %s, account %s): %w", region, account, err)
	}
	core := cfg.CoreThing.ThingName
	coreCert, err := os.ReadFile(cfg.Crypto.Principals.IoTCertificate.CertificatePath)
	if err != nil {
		return fmt.Errorf("core certificate: %w", err)
	}
	coreID, err := registerThing(ctx, cloud, core, coreCert)
	if err != nil {
		return fmt.Errorf("core %s: %w", core, err)
	}
	if err := registerSecretsKey(ctx, cloud, *dir, cfg, inv.Stdout, inv.Stderr); err != nil {
		return err
	}
	policies := []struct{ name, doc string }{
		{core + "-policy", corePolicy},
		{g.GroupId + "-devices", devicePolicy},
	}
	for _, p := range policies {
		if err := cloud.PutPolicy(ctx, p.name, fillPolicy(p.doc, region, account, core, g.GroupId)); err != nil {
			return fmt.Errorf("policy %s: %w", p.name, err)
		}
	}
	if err := cloud.AttachPolicy(ctx, policies[0].name, coreID); err != nil {
		return err
	}
	devices := make([]string, 0, len(g.Devices)) // certificate IDs, in group.json's order
	for _, d := range g.Devices {
		name := d.Name()
		pemCert, err := os.ReadFile(filepath.Join(*dir, "devices", name+".cert.pem"))
		if err != nil {
			return fmt.Errorf("device %s: %w", name, err)
		}
		id, err := registerThing(ctx, cloud, name, pemCert)
		if err != nil {
			return fmt.Errorf("device %s: %w", name, err)
		}
		if id != d.CertificateID() {
			return fmt.Errorf("device %s: devices/%s.cert.pem has ID %s, but group.json registers %s", name, name, id, d.CertificateID())
		}
		if err := cloud.AttachPolicy(ctx, policies[1].name, id); err != nil {
			return err
		}
		devices = append(devices, id)
	}
	if _, err := cloud.CreateGroup(ctx, admin.NewGroup{
		Id: g.GroupId, Core: core, CoreCertificateId: coreID,
		CACertificatePem: string(groupCA), CAKeyPem: string(groupCAKey), CertificateExpiryMs: *expiry,
	}); err != nil {
		return fmt.Errorf("group %s: %w", g.GroupId, err)
	}
	for i, d := range g.Devices {
		if err := cloud.AddDevice(ctx, g.GroupId, d.Name(), devices[i]); err != nil {
			return fmt.Errorf("group %s: %w", g.GroupId, err)
		}
	}
	existing, err := cloud.GetGroup(ctx, g.GroupId)
	if err != nil {
		return fmt.Errorf("group %s: %w", g.GroupId, err)
	}
	for _, sub := range g.Subscriptions {
		want := store.Subscription{Id: sub.Id, Source: sub.Source, Subject: sub.Subject, Target: sub.Target}
		if i := slices.IndexFunc(existing.Subscriptions, func(s store.Subscription) bool { return s.Id == sub.Id }); i >= 0 {
			if existing.Subscriptions[i] != want {
				return fmt.Errorf("group %s: subscription %s differs in ggcloud (%+v) from group.json (%+v)", g.GroupId, sub.Id, existing.Subscriptions[i], want)
			}
			continue
		}
		if _, err := cloud.AddSubscription(ctx, g.GroupId, want); err != nil {
			return fmt.Errorf("group %s: subscription %s: %w", g.GroupId, sub.Id, err)
		}
	}
	fmt.Fprintf(inv.Stdout, "registered core %s (certificate %s, policy %s)\n", core, coreID, policies[0].name)
	fmt.Fprintf(inv.Stdout, "registered %d devices (policy %s: discovery only)\n", len(devices), policies[1].name)
	fmt.Fprintf(inv.Stdout, "registered group %s (%d subscriptions, server certificates valid %d ms)\n", g.GroupId, len(g.Subscriptions), *expiry)
	if *deploy {
		id, err := cloud.Deploy(ctx, g.GroupId)
		if err != nil {
			return fmt.Errorf("deploy %s: %w", g.GroupId, err)
		}
		fmt.Fprintf(inv.Stdout, "deployed group %s: deployment %s\n", g.GroupId, id)
	}
	if len(edits) > 0 {
		if err := editConfig(configPath, edits); err != nil {
			return err
		}
		for _, e := range edits {
			fmt.Fprintf(inv.Stdout, "config.json: %s %v\n", strings.Join(e.path, "."), e.value)
		}
	}
	return nil
}

// registerThing creates a thing (if new) and registers its certificate;
// it returns the certificate ID.
func registerThing(ctx context.Context, cloud *admin.Client, name string, certPEM []byte) (string, error) {
	if _, err := pki.ParseCertificates(certPEM); err != nil {
		return "", err
	}
	if _, err := cloud.CreateThing(ctx, name); err != nil {
		return "", err
	}
	return cloud.RegisterCertificate(ctx, name, certPEM)
}

// regionAccount reads the region and account of a thing ARN.
func regionAccount(thingARN string) (string, string, error) {
	parts := strings.SplitN(thingARN, ":", 6)
	if len(parts) != 6 || parts[2] != "iot" {
		return "", "", fmt.Errorf("%q is not a thing ARN", thingARN)
	}
	return parts[3], parts[4], nil
}
