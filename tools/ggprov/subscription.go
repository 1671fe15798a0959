package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/internal/cli"
)

// runSubscriptionAdd adds a subscription to the bundle's group.json;
// with --if-missing it leaves the group alone when it has the
// subscription (the same source, subject and target) already.
func runSubscriptionAdd(_ context.Context, inv *cli.Invocation) error {
	fs := inv.Flags
	dir := fs.String("dir", "", "bundle directory written by ggprov init")
	id := fs.String("id", "", "subscription ID (default: the next free s<N>)")
	source := fs.String("source", "", "source: a thing name of the group, cloud, GGShadowService, or an ARN")
	subject := fs.String("subject", "", "MQTT topic filter")
	target := fs.String("target", "", "target: a thing name of the group, cloud, GGShadowService, or an ARN")
	ifMissing := fs.Bool("if-missing", false, "do nothing when the group has this subscription (source, subject and target) already")
	if _, err := inv.Parse("", 0, 0); err != nil {
		return err
	}
	if *dir == "" || *source == "" || *subject == "" || *target == "" {
		return usagef("--dir, --source, --subject and --target are required")
	}
	path := filepath.Join(*dir, "write", "deployment", "group", "group.json")
	g, err := config.LoadGroup(path)
	if err != nil {
		return err
	}
	src, err := endpoint(g, *source)
	if err != nil {
		return fmt.Errorf("--source: %w", err)
	}
	dst, err := endpoint(g, *target)
	if err != nil {
		return fmt.Errorf("--target: %w", err)
	}
	if *ifMissing {
		for _, s := range g.Subscriptions {
			if s.Source == src && s.Subject == *subject && s.Target == dst {
				fmt.Fprintf(inv.Stdout, "subscription %s: %s -> %s on %q exists; group.json unchanged\n", s.Id, *source, *target, *subject)
				return nil
			}
		}
	}
	if *id == "" {
		*id = nextSubscriptionID(g)
	}
	g.Subscriptions = append(g.Subscriptions, config.Subscription{Id: *id, Source: src, Subject: *subject, Target: dst})
	data, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	if _, err := config.ParseGroup(data); err != nil {
		return fmt.Errorf("refused, group unchanged: %w", err)
	}
	if err := replaceFile(path, append(data, '\n')); err != nil {
		return err
	}
	fmt.Fprintf(inv.Stdout, "added subscription %s: %s -> %s on %q\nsend SIGHUP to a running ggcore to apply it\n", *id, *source, *target, *subject)
	return nil
}

// endpoint resolves a thing name of the group to its ARN; cloud,
// GGShadowService and ARNs pass through.
func endpoint(g *config.Group, s string) (string, error) {
	if s == config.EndpointCloud || s == config.EndpointShadow || strings.HasPrefix(s, "arn:") {
		return s, nil
	}
	if t, ok := g.ThingByName(s); ok {
		return t.ThingArn, nil
	}
	return "", fmt.Errorf("%q is not a thing of group %s, %s, %s or an ARN", s, g.GroupId, config.EndpointCloud, config.EndpointShadow)
}

func nextSubscriptionID(g *config.Group) string {
	used := map[string]bool{}
	for _, s := range g.Subscriptions {
		used[s.Id] = true
	}
	for n := 1; ; n++ {
		if id := fmt.Sprintf("s%d", n); !used[id] {
			return id
		}
	}
}

// replaceFile swaps path's content atomically: write a new file beside it,
// sync, rename over, sync the directory. A crash leaves the old or the new
// file, never a mix.
func replaceFile(path string, data []byte) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := writeFile(tmp, data, info.Mode().Perm()); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
