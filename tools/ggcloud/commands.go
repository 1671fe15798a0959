package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/tools/ggcloud/admin"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// withClient runs fn with an admin client of the data directory.
func withClient(g *globals, fn func(*admin.Client) error) error {
	c, err := admin.Open(g.data)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// readFlagFile reads the file a required flag names.
func readFlagFile(flagName, path string) ([]byte, error) {
	if path == "" {
		return nil, usagef("--%s is required", flagName)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagName, err)
	}
	return data, nil
}

func runThingCreate(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	pos, err := parse(flags("thing create", g, stderr), args, 1, false, "NAME")
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		t, err := c.CreateThing(ctx, pos[0])
		if err != nil {
			return err
		}
		if t.Created {
			fmt.Fprintf(stdout, "created thing %s (%s)\n", t.Name, t.Arn)
		} else {
			fmt.Fprintf(stdout, "thing %s exists (%s)\n", t.Name, t.Arn)
		}
		return nil
	})
}

func runThingList(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if _, err := parse(flags("thing list", g, stderr), args, 0, false, ""); err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		things, err := c.ListThings(ctx)
		for _, t := range things {
			fmt.Fprintf(stdout, "%s\t%s\n", t.Name, t.Arn)
		}
		return err
	})
}

func runCertRegister(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("cert register", g, stderr)
	thing := fs.String("thing", "", "the thing the certificate belongs to")
	pemFile := fs.String("pem", "", "the certificate (PEM)")
	if _, err := parse(fs, args, 0, false, ""); err != nil {
		return err
	}
	if *thing == "" {
		return usagef("--thing is required")
	}
	pem, err := readFlagFile("pem", *pemFile)
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		id, err := c.RegisterCertificate(ctx, *thing, pem)
		if err == nil {
			fmt.Fprintln(stdout, id)
		}
		return err
	})
}

func runPolicyCreate(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("policy create", g, stderr)
	docFile := fs.String("document", "", "the policy document (JSON)")
	pos, err := parse(fs, args, 1, false, "NAME")
	if err != nil {
		return err
	}
	doc, err := readFlagFile("document", *docFile)
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		if err := c.PutPolicy(ctx, pos[0], doc); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "stored policy %s\n", pos[0])
		return nil
	})
}

func runPolicyAttach(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("policy attach", g, stderr)
	cert := fs.String("cert", "", "certificate ID")
	pos, err := parse(fs, args, 1, false, "NAME")
	if err != nil {
		return err
	}
	if *cert == "" {
		return usagef("--cert is required")
	}
	return withClient(g, func(c *admin.Client) error {
		if err := c.AttachPolicy(ctx, pos[0], *cert); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "attached policy %s to certificate %s\n", pos[0], *cert)
		return nil
	})
}

func runGroupCreate(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("group create", g, stderr)
	core := fs.String("core", "", "the core's thing name")
	coreCert := fs.String("core-cert", "", "the core's certificate ID (default: its only one)")
	caCert := fs.String("ca-cert", "", "the group CA certificate (PEM)")
	caKey := fs.String("ca-key", "", "the group CA's RSA private key (PEM)")
	expiry := fs.Int64("certificate-expiry-ms", config.DefaultCertificateExpiryMs, "MQTT server certificate validity in ms (7 to 30 days to deploy)")
	pos, err := parse(fs, args, 1, false, "ID")
	if err != nil {
		return err
	}
	if *core == "" {
		return usagef("--core is required")
	}
	if *expiry <= 0 {
		return usagef("--certificate-expiry-ms %d: want a positive number of milliseconds", *expiry)
	}
	caPEM, err := readFlagFile("ca-cert", *caCert)
	if err != nil {
		return err
	}
	keyPEM, err := readFlagFile("ca-key", *caKey)
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		grp, err := c.CreateGroup(ctx, admin.NewGroup{
			Id: pos[0], Core: *core, CoreCertificateId: *coreCert,
			CACertificatePem: string(caPEM), CAKeyPem: string(keyPEM), CertificateExpiryMs: *expiry,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: core %s (certificate %s)\n", grp.Id, grp.Core.Thing, grp.Core.CertificateId)
		return nil
	})
}

func runGroupAddDevice(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("group add-device", g, stderr)
	cert := fs.String("cert", "", "the device's certificate ID (default: its only one)")
	pos, err := parse(fs, args, 2, false, "ID THING")
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		if err := c.AddDevice(ctx, pos[0], pos[1], *cert); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: device %s\n", pos[0], pos[1])
		return nil
	})
}

func runGroupRemoveDevice(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("group remove-device", g, stderr)
	pos, err := parse(fs, args, 2, false, "ID THING")
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		if err := c.RemoveDevice(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: device %s removed; deploy the group to apply it\n", pos[0], pos[1])
		return nil
	})
}

func runGroupRemoveSubscription(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("group remove-subscription", g, stderr)
	pos, err := parse(fs, args, 2, false, "ID SUBSCRIPTION")
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		if err := c.RemoveSubscription(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: subscription %s removed; deploy the group to apply it\n", pos[0], pos[1])
		return nil
	})
}

func runGroupAddSubscription(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("group add-subscription", g, stderr)
	id := fs.String("id", "", "subscription ID")
	source := fs.String("source", "", "source: a thing of the group (name or ARN), cloud or GGShadowService")
	subject := fs.String("subject", "", "MQTT topic filter")
	target := fs.String("target", "", "target: a thing of the group (name or ARN), cloud or GGShadowService")
	pos, err := parse(fs, args, 1, false, "ID")
	if err != nil {
		return err
	}
	if *id == "" || *source == "" || *subject == "" || *target == "" {
		return usagef("--id, --source, --subject and --target are required")
	}
	return withClient(g, func(c *admin.Client) error {
		s, err := c.AddSubscription(ctx, pos[0], store.Subscription{Id: *id, Source: *source, Subject: *subject, Target: *target})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: subscription %s: %s -> %s on %q\n", pos[0], s.Id, s.Source, s.Target, s.Subject)
		return nil
	})
}

func runGroupDeploy(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	fs := flags("group deploy", g, stderr)
	firmware := fs.String("firmware", "", "a signed release file: the core installs it into its inactive slot and reboots to try it")
	pos, err := parse(fs, args, 1, false, "ID")
	if err != nil {
		return err
	}
	if *firmware != "" {
		return deployFirmware(ctx, g, pos[0], *firmware, stdout)
	}
	return withClient(g, func(c *admin.Client) error {
		id, err := c.Deploy(ctx, pos[0])
		if err == nil {
			fmt.Fprintln(stdout, id)
		}
		return err
	})
}

func runGroupShow(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	pos, err := parse(flags("group show", g, stderr), args, 1, false, "ID")
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		grp, err := c.GetGroup(ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, grp)
	})
}

func runGroupList(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	if _, err := parse(flags("group list", g, stderr), args, 0, false, ""); err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		groups, err := c.ListGroups(ctx)
		for _, grp := range groups {
			fmt.Fprintf(stdout, "%s\tcore %s\t%d devices\t%d subscriptions\tdeployment %s\n",
				grp.Id, grp.Core.Thing, len(grp.Devices), len(grp.Subscriptions), orNone(grp.CurrentDeploymentId))
		}
		return err
	})
}

func runConnectivitySet(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	pos, err := parse(flags("connectivity set", g, stderr), args, 2, true, "THING HOST:PORT [HOST:PORT ...]")
	if err != nil {
		return err
	}
	var eps []store.Endpoint
	for _, a := range pos[1:] {
		host, portText, err := net.SplitHostPort(a)
		port, perr := strconv.Atoi(portText)
		if err != nil || perr != nil || host == "" || port < 1 || port > 65535 {
			return usagef("%q: want HOST:PORT with a port 1-65535, such as 192.168.1.20:8883 or [fd00::1]:8883", a)
		}
		eps = append(eps, store.Endpoint{Id: a, HostAddress: host, PortNumber: port})
	}
	return withClient(g, func(c *admin.Client) error {
		if err := c.SetConnectivity(ctx, pos[0], eps); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "connectivity of %s: %d endpoint(s)\n", pos[0], len(eps))
		return nil
	})
}

func runConnectivityGet(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	pos, err := parse(flags("connectivity get", g, stderr), args, 1, false, "THING")
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		eps, err := c.Connectivity(ctx, pos[0])
		for _, e := range eps {
			fmt.Fprintln(stdout, net.JoinHostPort(e.HostAddress, strconv.Itoa(e.PortNumber)))
		}
		return err
	})
}

func runDeploymentStatus(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	pos, err := parse(flags("deployment status", g, stderr), args, 2, false, "GROUP DEPLOYMENT")
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		d, err := c.DeploymentStatus(ctx, pos[0], pos[1])
		for _, s := range d.Statuses {
			fmt.Fprintf(stdout, "%s\t%s\t%s", s.Core, s.Status, s.UpdatedAt.Format(time.RFC3339))
			if s.ErrorMessage != "" {
				fmt.Fprintf(stdout, "\t%s", s.ErrorMessage)
			}
			fmt.Fprintln(stdout)
		}
		return err
	})
}

func runDeploymentList(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	pos, err := parse(flags("deployment list", g, stderr), args, 1, false, "GROUP")
	if err != nil {
		return err
	}
	return withClient(g, func(c *admin.Client) error {
		list, err := c.ListDeployments(ctx, pos[0])
		for _, d := range list {
			current := ""
			if d.Current {
				current = "\tcurrent"
			}
			fmt.Fprintf(stdout, "%s\tversion %s\t%s%s\n", d.DeploymentId, d.GroupVersionId, d.CreatedAt.Format(time.RFC3339), current)
		}
		return err
	})
}

func printJSON(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
