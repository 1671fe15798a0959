// Command ggcloud is the self-hostable control plane of a ggcore fleet
// (DESIGN.md "Control plane — ggcloud").
//
//	ggcloud [--data DIR] serve --listen 127.0.0.1:8443 --cert FILE --key FILE [--mqtt-listen 127.0.0.1:8883] [options]
//	ggcloud [--data DIR] thing create NAME | thing list
//	ggcloud [--data DIR] cert register --thing NAME --pem FILE
//	ggcloud [--data DIR] policy create NAME --document FILE | policy attach NAME --cert ID
//	ggcloud [--data DIR] group create|add-device|add-subscription|deploy|show|list ...
//	ggcloud [--data DIR] connectivity set THING HOST:PORT... | connectivity get THING
//	ggcloud [--data DIR] deployment status GROUP DEPLOYMENT | deployment list GROUP
//
// serve answers the control-plane API over HTTPS with mutual TLS and the
// admin API on the unix socket DIR/admin.sock; with --mqtt-listen it also
// runs the MQTT broker that stands in for AWS IoT Core. Every other command is an
// admin call: through the socket when a ggcloud serves DIR, else on the
// store directly. DIR defaults to $GGCLOUD_DATA, else ./ggcloud-data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// usageError is a command-line mistake (exit status 2). Its text is the
// mistake alone, so messages read "ggcloud: thing create: NAME is required".
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError; format and args are as for fmt.Errorf.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: ggcloud [--data DIR] COMMAND ...

  serve --listen ADDR --cert FILE --key FILE [--mqtt-listen ADDR] [--region R] [--account A] [--test-min-validity D]
  thing create NAME
  thing list
  cert register --thing NAME --pem FILE
  policy create NAME --document FILE
  policy attach NAME --cert ID
  group create ID --core THING [--core-cert ID] --ca-cert FILE --ca-key FILE [--certificate-expiry-ms N]
  group add-device ID THING [--cert ID]
  group remove-device ID THING
  group add-subscription ID --id SID --source S --subject FILTER --target T
  group remove-subscription ID SID
  group deploy ID
  group show ID
  group list
  connectivity set THING HOST:PORT [HOST:PORT ...]
  connectivity get THING
  deployment status GROUP DEPLOYMENT
  deployment list GROUP

DIR is ggcloud's data directory: $GGCLOUD_DATA, else ./ggcloud-data.
Run 'ggcloud COMMAND [SUBCOMMAND] -h' for a command's options.
`

// command runs one (sub)command with its arguments after the names.
type command func(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error

// lookup returns the command named "name" or "name sub", or nil.
func lookup(name string) command {
	switch name {
	case "serve":
		return runServe
	case "thing create":
		return runThingCreate
	case "thing list":
		return runThingList
	case "cert register":
		return runCertRegister
	case "policy create":
		return runPolicyCreate
	case "policy attach":
		return runPolicyAttach
	case "group create":
		return runGroupCreate
	case "group add-device":
		return runGroupAddDevice
	case "group add-subscription":
		return runGroupAddSubscription
	case "group remove-device":
		return runGroupRemoveDevice
	case "group remove-subscription":
		return runGroupRemoveSubscription
	case "group deploy":
		return runGroupDeploy
	case "group show":
		return runGroupShow
	case "group list":
		return runGroupList
	case "connectivity set":
		return runConnectivitySet
	case "connectivity get":
		return runConnectivityGet
	case "deployment status":
		return runDeploymentStatus
	case "deployment list":
		return runDeploymentList
	}
	return nil
}

// globals are the options every command takes.
type globals struct {
	data string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{data: defaultData()}
	fs := flag.NewFlagSet("ggcloud", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&g.data, "data", g.data, "data directory")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "ggcloud: %v\n%s", err, usage)
		return 2
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	name, cmd := args[0], lookup(args[0])
	rest := args[1:]
	if cmd == nil && len(args) > 1 {
		name, cmd, rest = args[0]+" "+args[1], lookup(args[0]+" "+args[1]), args[2:]
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "ggcloud: unknown command %q\n%s", strings.Join(args[:min(2, len(args))], " "), usage)
		return 2
	}
	err := cmd(ctx, g, rest, stdout, stderr)
	var usageErr *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usageErr):
		printError(stderr, fmt.Errorf("%s: %w", name, err))
		return 2
	default:
		printError(stderr, fmt.Errorf("%s: %w", name, err))
		return 1
	}
}

// defaultData is $GGCLOUD_DATA, else ./ggcloud-data.
func defaultData() string {
	if d := os.Getenv("GGCLOUD_DATA"); d != "" {
		return d
	}
	return "ggcloud-data"
}

// printError writes err with every line prefixed "ggcloud: ".
func printError(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "ggcloud: %s\n", line)
	}
}

// flags returns a command's flag set, which also takes --data.
func flags(name string, g *globals, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ggcloud "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&g.data, "data", g.data, "data directory (default $GGCLOUD_DATA, else ./ggcloud-data)")
	return fs
}

// parse parses flags and positional arguments in any order and checks
// the number of positional arguments: exactly want, or at least want
// when more is true.
func parse(fs *flag.FlagSet, args []string, want int, more bool, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err: err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) < want || !more && len(pos) > want {
		if names == "" {
			return nil, usagef("unexpected argument %q", pos[0])
		}
		return nil, usagef("want %s, got %d argument(s)", names, len(pos))
	}
	return pos, nil
}
