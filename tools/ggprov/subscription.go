package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ggcore/ggcore/core/config"
)

func runSubscriptionAdd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ggprov subscription add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "bundle directory written by ggprov init")
	id := fs.String("id", "", "subscription ID (default: the next free s<N>)")
	source := fs.String("source", "", "source: a thing name of the group, cloud, GGShadowService, or an ARN")
	subject := fs.String("subject", "", "MQTT topic filter")
	target := fs.String("target", "", "target: a thing name of the group, cloud, GGShadowService, or an ARN")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("subscription add: %v", err)
	}
	if *dir == "" || *source == "" || *subject == "" || *target == "" {
		return usagef("subscription add: --dir, --source, --subject and --target are required")
	}
	path := filepath.Join(*dir, "write", "deployment", "group", "group.json")
	g, err := config.LoadGroup(path)
	if err != nil {
		return err
	}
	src, err := endpoint(g, *source)
	if err != nil {
		return fmt.Errorf("subscription add: --source: %w", err)
	}
	dst, err := endpoint(g, *target)
	if err != nil {
		return fmt.Errorf("subscription add: --target: %w", err)
	}
	if *id == "" {
		*id = nextSubscriptionID(g)
	}
	g.Subscriptions = append(g.Subscriptions, config.Subscription{Id: *id, Source: src, Subject: *subject, Target: dst})
	data, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return fmt.Errorf("subscription add: %w", err)
	}
	if _, err := config.ParseGroup(data); err != nil {
		return fmt.Errorf("subscription add: refused, group unchanged: %w", err)
	}
	if err := replaceFile(path, append(data, '\n')); err != nil {
		return fmt.Errorf("subscription add: %w", err)
	}
	fmt.Fprintf(stdout, "added subscription %s: %s -> %s on %q\nsend SIGHUP to a running ggcore to apply it\n", *id, *source, *target, *subject)
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
