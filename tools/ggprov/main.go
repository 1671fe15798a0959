// Command ggprov provisions a ggcore fleet.
//
//	ggprov init --dir DIR --core NAME --device NAME [--device NAME ...]
//	ggprov subscription add --dir DIR --source NAME|cloud --subject FILTER --target NAME|cloud
//	ggprov server-cert --dir DIR [--server-name NAME ...]
//	ggprov keys create --uri URI --type TYPE [--usage sign|decrypt]
//
// init writes DESIGN.md's provisioning bundle: the identity CA and group CA,
// the core's and every device's key and certificate, the MQTT server
// certificate, config.json and group.json. subscription add edits the
// bundle's group.json. server-cert re-issues the MQTT server certificate
// (valid 7 days by default) until the device certificate manager does.
// keys create makes a key inside a TPM or PKCS#11 token and prints its
// public key and a CSR.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// usageError is a command-line mistake (exit status 2). Its text is the
// mistake alone, so messages read "ggprov: init: --dir is required".
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError; format and args are as for fmt.Errorf.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  ggprov init --dir DIR --core NAME --device NAME [--device NAME ...] [options]
  ggprov subscription add --dir DIR --source S --subject FILTER --target T
  ggprov server-cert --dir DIR [--server-name NAME ...]
  ggprov keys create --uri URI --type TYPE [--usage sign|decrypt] [options]
  ggprov ggcloud-cert --dir DIR [--host NAME ...]
  ggprov register --dir DIR --ggcloud-data DATA [--ggcloud HOST:PORT] [--iot HOST:PORT]

Run 'ggprov init -h', 'ggprov subscription add -h' or 'ggprov keys create -h' for the options.
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
	case "server-cert":
		err = runServerCert(args[1:], stdout, stderr)
	case "keys":
		err = runKeys(args[1:], stdout, stderr)
	case "ggcloud-cert":
		err = runGGCloudCert(args[1:], stdout, stderr)
	case "register":
		err = runRegister(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ggprov: unknown command %q\n%s", args[0], usage)
		return 2
	}
	var usageErr *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usageErr):
		printError(stderr, err)
		return 2
	default:
		printError(stderr, err)
		return 1
	}
}

// printError writes err with every line prefixed "ggprov: ", so that each
// problem of an errors.Join reads on its own.
func printError(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "ggprov: %s\n", line)
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return fmt.Sprint(*l) }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }
