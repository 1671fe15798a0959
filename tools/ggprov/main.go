// Command ggprov provisions a ggcore fleet (docs/design.md "Provisioning —
// ggprov").
//
// init writes a provisioning bundle: the identity CA and group CA, the
// core's and every device's key and certificate, the MQTT server
// certificate, config.json and group.json. subscription adds routes to the
// bundle's group.json, and config reads or changes a few settings of its
// config.json. server-cert re-issues the MQTT server certificate until the
// device certificate manager does. keys creates a key inside a TPM or
// PKCS#11 token and prints its public key and a CSR. ggcloud-cert issues
// ggcloud's HTTPS certificate from the bundle's identity CA, and register
// puts the bundle into a ggcloud. release makes release signing keys and
// builds, signs and inspects over-the-air image releases.
//
// `ggprov -h` lists every command, `ggprov help COMMAND` (or
// `ggprov COMMAND -h`) shows one; both come from the command table in this
// file, which also drives the dispatch.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/ggcore/ggcore/internal/cli"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs ggprov with args and returns its exit status.
func run(args []string, stdout, stderr io.Writer) int {
	return program().Run(context.Background(), args, stdout, stderr)
}

// program is ggprov's command table.
func program() *cli.Program {
	return &cli.Program{
		Name: "ggprov",
		Commands: []cli.Command{
			{Name: "init", Args: "--dir DIR --core NAME --device NAME [--device NAME ...] [options]",
				Summary: "create a provisioning bundle: CAs, the core's and devices' keys and certificates, config.json and group.json",
				Run:     runInit},
			{Name: "subscription", Subcommands: []cli.Command{
				{Name: "add", Args: "--dir DIR --source S --subject FILTER --target T [--id SID] [--if-missing]",
					Summary: "add a subscription to the bundle's group.json", Run: runSubscriptionAdd},
			}},
			{Name: "config", Subcommands: []cli.Command{
				{Name: "get", Args: "--dir DIR KEY", Summary: "print a setting of the bundle's config.json",
					Help: configHelp, Run: runConfigGet},
				{Name: "set", Args: "--dir DIR KEY VALUE [KEY VALUE ...]", Summary: "change settings of the bundle's config.json",
					Help: configHelp, Run: runConfigSet},
				{Name: "unset", Args: "--dir DIR KEY [KEY ...]", Summary: "remove settings from the bundle's config.json",
					Help: configHelp, Run: runConfigUnset},
			}},
			{Name: "server-cert", Args: "--dir DIR [--server-name NAME ...]",
				Summary: "re-issue the bundle's MQTT server certificate (same key and names), valid for the group's expiry",
				Run:     runServerCert},
			{Name: "keys", Subcommands: []cli.Command{
				{Name: "create", Args: "--uri URI --type TYPE [--usage sign|decrypt] [--subject NAME] [--tpm-device DEV | --pkcs11-module PATH --pkcs11-token LABEL --pkcs11-pin-source file:///PATH]",
					Summary: "make a key in a TPM or PKCS#11 token; print its public key and, for a signing key, a CSR",
					Help: `URI says where the key is made:
  file:///path/key.pem     a TPM key, written as a TSS2 PRIVATE KEY file (only the TPM can use it)
  tpm2:handle=0x81000002   a TPM key made persistent at the handle
  pkcs11:object=LABEL;type=private[;token=LABEL][;id=%01]   a key in a PKCS#11 token
TYPE is rsa2048, rsa3072, ecp256 or ecp384.`,
					Run: runKeysCreate},
			}},
			{Name: "ggcloud-cert", Args: "--dir DIR [--host NAME ...]",
				Summary: "issue ggcloud's HTTPS certificate from the bundle's identity CA (DIR/ggcloud)", Run: runGGCloudCert},
			{Name: "register", Args: "--dir DIR --ggcloud-data DATA [--ggcloud HOST:PORT] [--iot HOST:PORT] [--certificate-expiry-ms N] [--deploy]",
				Summary: "put the bundle into a ggcloud: things, certificates, policies and the group", Run: runRegister},
			releaseCommands(),
		},
	}
}

// usagef returns a usage mistake (exit status 2); format and args are as
// for fmt.Errorf.
func usagef(format string, args ...any) error { return cli.Usagef(format, args...) }

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return fmt.Sprint(*l) }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }
