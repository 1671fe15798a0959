// Command ggprov provisions a ggcore fleet.
//
//	ggprov init --dir DIR --core NAME --device NAME [--device NAME ...]
//	ggprov subscription add --dir DIR --source NAME|cloud --subject FILTER --target NAME|cloud
//
// init writes DESIGN.md's provisioning bundle: the identity CA and group CA,
// the core's and every device's key and certificate, the MQTT server
// certificate, config.json and group.json. subscription add edits the
// bundle's group.json.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  ggprov init --dir DIR --core NAME --device NAME [--device NAME ...] [options]
  ggprov subscription add --dir DIR --source S --subject FILTER --target T

Run 'ggprov init -h' or 'ggprov subscription add -h' for the options.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "init":
		err = runInit(args[1:], stdout, stderr)
	case "subscription":
		if len(args) < 2 || args[1] != "add" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = runSubscriptionAdd(args[2:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ggprov: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ggprov: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "ggprov: %v\n", err)
		return 1
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return fmt.Sprint(*l) }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }
