// Command ggcloud is the self-hostable control plane of a ggcore fleet
// (docs/design.md "ggcloud").
//
// serve answers the control-plane API over HTTPS with mutual TLS and the
// admin API on the unix socket DIR/admin.sock; with --mqtt-listen it also
// runs the MQTT broker that stands in for AWS IoT Core. The other commands
// are admin calls, through the socket when a ggcloud serves DIR, else on
// the store directly: thing and cert register things and their
// certificates, policy stores and attaches AWS IoT policies, group builds
// and deploys groups (with their secret resources), secret keeps the
// secrets deployments carry to cores (sealed to each core's
// SecretsManager key), function uploads local functions' code and adds
// them to groups, connectivity sets what discovery reports of a
// core, and deployment reports deployments. DIR (--data) defaults to
// $GGCLOUD_DATA, else ./ggcloud-data.
//
// `ggcloud -h` lists every command, `ggcloud help COMMAND` (or
// `ggcloud COMMAND -h`) shows one; both come from the command table in
// this file, which also drives the dispatch.
package main

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ggcore/ggcore/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs ggcloud with args and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return program(&globals{}).Run(ctx, args, stdout, stderr)
}

// program is ggcloud's command table; commands get g.
func program(g *globals) *cli.Program {
	c := g.command
	return &cli.Program{
		Name:    "ggcloud",
		Globals: "[--data DIR]",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&g.data, "data", defaultData(), "ggcloud's data directory, $GGCLOUD_DATA when set")
		},
		Footer: `DIR is ggcloud's data directory: $GGCLOUD_DATA, else ./ggcloud-data.
Every command but serve is an admin call: through DIR/admin.sock when a
ggcloud serves DIR, else on the store directly.`,
		Commands: []cli.Command{
			{Name: "serve", Args: "--listen ADDR --cert FILE --key FILE [--mqtt-listen ADDR] [--region R] [--account A] [--test-min-validity D]",
				Summary: "serve the HTTPS control-plane API, the admin API on DIR/admin.sock and, with --mqtt-listen, the MQTT broker standing in for AWS IoT Core",
				Run:     c(runServe)},
			{Name: "thing", Subcommands: []cli.Command{
				{Name: "create", Args: "NAME", Summary: "create a thing (or say that it exists)", Run: c(runThingCreate)},
				{Name: "list", Summary: "list the things and their ARNs", Run: c(runThingList)},
			}},
			{Name: "cert", Subcommands: []cli.Command{
				{Name: "register", Args: "--thing NAME --pem FILE", Summary: "register a thing's certificate and print its ID", Run: c(runCertRegister)},
			}},
			{Name: "policy", Subcommands: []cli.Command{
				{Name: "create", Args: "NAME --document FILE", Summary: "store an AWS IoT policy (JSON)", Run: c(runPolicyCreate)},
				{Name: "attach", Args: "NAME --cert ID", Summary: "attach a policy to a certificate", Run: c(runPolicyAttach)},
			}},
			{Name: "group", Subcommands: []cli.Command{
				{Name: "create", Args: "ID --core THING [--core-cert ID] --ca-cert FILE --ca-key FILE [--certificate-expiry-ms N]",
					Summary: "create a group with its core and group CA", Run: c(runGroupCreate)},
				{Name: "add-device", Args: "ID THING [--cert ID]", Summary: "add a device to a group", Run: c(runGroupAddDevice)},
				{Name: "remove-device", Args: "ID THING", Summary: "remove a device from a group (deploy the group to apply it)", Run: c(runGroupRemoveDevice)},
				{Name: "add-subscription", Args: "ID --id SID --source S --subject FILTER --target T",
					Summary: "add a subscription to a group", Run: c(runGroupAddSubscription)},
				{Name: "remove-subscription", Args: "ID SID", Summary: "remove a subscription from a group (deploy the group to apply it)", Run: c(runGroupRemoveSubscription)},
				{Name: "add-secret", Args: "ID --resource-id RID --secret NAME|ARN [--name NAME] [--labels L1,L2]",
					Summary: "add a secret resource (v1's SecretsManagerSecretResourceData) to a group", Run: c(runGroupAddSecret)},
				{Name: "remove-resource", Args: "ID RID", Summary: "remove a resource from a group (deploy the group to apply it)", Run: c(runGroupRemoveResource)},
				{Name: "deploy", Args: "ID [--firmware RELEASE]", Summary: "deploy a group and print the deployment ID; with --firmware, also a signed image release the core installs and reboots into", Run: c(runGroupDeploy)},
				{Name: "show", Args: "ID", Summary: "print a group as JSON", Run: c(runGroupShow)},
				{Name: "list", Summary: "list the groups", Run: c(runGroupList)},
			}},
			{Name: "secret", Subcommands: []cli.Command{
				{Name: "create", Args: "NAME [--from-file FILE] [--binary]", Summary: "create a secret; its value (from FILE, else stdin) is version 1, AWSCURRENT", Run: c(runSecretCreate)},
				{Name: "put-value", Args: "SECRET [--from-file FILE] [--binary] [--stages L1,L2]",
					Summary: "add a version to a secret; its labels (default AWSCURRENT) move to it, AWSCURRENT's old version becomes AWSPREVIOUS", Run: c(runSecretPutValue)},
				{Name: "list", Summary: "list the secrets with their versions and staging labels (never the values)", Run: c(runSecretList)},
			}},
			{Name: "function", Subcommands: []cli.Command{
				{Name: "put-code", Args: "--arn ARN --file ARCHIVE [--max-size BYTES]",
					Summary: "upload a function's code (zip or tar.gz, default at most 50 MiB); deployments carry its SHA-256 and size", Run: c(runFunctionPutCode)},
				{Name: "add", Args: "GROUP --arn ARN --config FILE [--id ID]", Summary: "add a local function (v1's FunctionConfiguration from FILE) to a group", Run: c(runFunctionAdd)},
				{Name: "list", Summary: "list the functions' code (ARN, SHA-256, size)", Run: c(runFunctionList)},
			}},
			{Name: "connectivity", Subcommands: []cli.Command{
				{Name: "set", Args: "THING HOST:PORT [HOST:PORT ...]", Summary: "set the endpoints discovery reports for a core", Run: c(runConnectivitySet)},
				{Name: "get", Args: "THING", Summary: "print the endpoints of a core", Run: c(runConnectivityGet)},
			}},
			{Name: "deployment", Subcommands: []cli.Command{
				{Name: "status", Args: "GROUP DEPLOYMENT", Summary: "print each core's status of a deployment", Run: c(runDeploymentStatus)},
				{Name: "list", Args: "GROUP", Summary: "list a group's deployments", Run: c(runDeploymentList)},
			}},
		},
	}
}

// globals are the options every command takes, and the running
// command's flag set.
type globals struct {
	data string
	fs   *flag.FlagSet
}

// command runs one (sub)command with its arguments after the names.
type command func(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error

// command adapts a command to the table.
func (g *globals) command(run command) func(context.Context, *cli.Invocation) error {
	return func(ctx context.Context, inv *cli.Invocation) error {
		g.fs = inv.Flags
		return run(ctx, g, inv.Args, inv.Stdout, inv.Stderr)
	}
}

// defaultData is $GGCLOUD_DATA, else ./ggcloud-data.
func defaultData() string {
	if d := os.Getenv("GGCLOUD_DATA"); d != "" {
		return d
	}
	return "ggcloud-data"
}

// flags returns the running command's flag set, which holds --data; the
// table names the command and prints its usage, so name and stderr are
// not needed.
func flags(_ string, g *globals, _ io.Writer) *flag.FlagSet { return g.fs }

// parse parses flags and positional arguments in any order and checks
// the number of positional arguments: exactly want, or at least want
// when more is true.
func parse(fs *flag.FlagSet, args []string, want int, more bool, names string) ([]string, error) {
	most := want
	if more {
		most = -1
	}
	return cli.Parse(fs, args, names, want, most)
}

// usagef returns a usage mistake (exit status 2); format and args are as
// for fmt.Errorf.
func usagef(format string, args ...any) error { return cli.Usagef(format, args...) }
