package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/internal/cli"
)

// configKey is a setting of a bundle that `ggprov config` reads, and
// perhaps sets or removes: the few that scripts such as `make run` need.
type configKey struct {
	name string
	// get reads the setting from the checked config.json, defaults
	// filled in; "" when it is absent.
	get func(c *config.Config) (string, error)
	// value turns a VALUE argument into the JSON value to store; nil
	// when the setting is read-only.
	value func(s string) (any, error)
	// unset is whether the setting may be removed.
	unset bool
}

// configKeys are the settings `ggprov config` knows, by name: a JSON path
// of config.json, or group.GroupId (of the bundle's group.json).
func configKeys() []configKey {
	return []configKey{
		{name: "coreThing.thingArn", get: func(c *config.Config) (string, error) { return c.CoreThing.ThingArn, nil }},
		{name: "coreThing.ggMqttPort",
			get: func(c *config.Config) (string, error) { return strconv.Itoa(c.CoreThing.GGMqttPort), nil },
			value: func(s string) (any, error) {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 || n > 65535 {
					return nil, fmt.Errorf("%q: want a port (1-65535)", s)
				}
				return n, nil
			}},
		{name: "ggcore.localMqttBind",
			get:   func(c *config.Config) (string, error) { return c.GGCore.LocalMQTTBind, nil },
			value: func(s string) (any, error) { return s, nil }},
		{name: "ggcore.connectivity",
			get:   func(c *config.Config) (string, error) { return strings.Join(c.GGCore.Connectivity, ","), nil },
			value: func(s string) (any, error) { return strings.Split(s, ","), nil },
			unset: true},
		{name: "ggcore.tpm.device", get: func(c *config.Config) (string, error) { return c.GGCore.TPM.Device, nil }},
		{name: "crypto.principals.MQTTServerCertificate",
			get: func(c *config.Config) (string, error) {
				return c.Crypto.Principals.MQTTServerCertificate.PrivateKey, nil
			},
			unset: true},
		{name: "group.GroupId", get: func(c *config.Config) (string, error) {
			g, err := config.LoadGroup(c.GroupPath())
			if err != nil {
				return "", err
			}
			return g.GroupId, nil
		}},
	}
}

// configHelp describes the keys, for `ggprov config CMD -h`.
const configHelp = `KEY is one of:
  coreThing.thingArn                        the core's thing ARN (read-only)
  coreThing.ggMqttPort                      the local MQTT port
  ggcore.localMqttBind                      the address the local MQTT server binds ("" for all)
  ggcore.connectivity                       HOST:PORT[,HOST:PORT...] the core reports as its
                                            address; unset: its own addresses
  ggcore.tpm.device                         the TPM (read-only)
  crypto.principals.MQTTServerCertificate   the MQTT server key (get prints its reference);
                                            unset: ggcore makes its own key and gets the
                                            certificate from the control plane
  group.GroupId                             the group's ID, from group.json (read-only)
get prints the value in effect (defaults filled in), or an empty line when
it is absent. set and unset change config.json only when the result is a
valid config.json, keeping every other field.`

// findConfigKey returns the key named name, if ok(key).
func findConfigKey(name, want string, ok func(configKey) bool) (configKey, error) {
	var valid []string
	for _, k := range configKeys() {
		if ok(k) {
			if k.name == name {
				return k, nil
			}
			valid = append(valid, k.name)
		}
	}
	return configKey{}, cli.Usagef("%q: want a key to %s: %s", name, want, strings.Join(valid, ", "))
}

func runConfigGet(_ context.Context, inv *cli.Invocation) error {
	dir := inv.Flags.String("dir", "", "bundle directory written by ggprov init")
	pos, err := inv.Parse("KEY", 1, 1)
	if err != nil {
		return err
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	k, err := findConfigKey(pos[0], "get", func(configKey) bool { return true })
	if err != nil {
		return err
	}
	cfg, err := config.LoadConfig(filepath.Join(*dir, "config.json"))
	if err != nil {
		return err
	}
	v, err := k.get(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(inv.Stdout, v)
	return nil
}

func runConfigSet(_ context.Context, inv *cli.Invocation) error {
	dir := inv.Flags.String("dir", "", "bundle directory written by ggprov init")
	pos, err := inv.Parse("KEY VALUE [KEY VALUE ...]", 2, -1)
	if err != nil {
		return err
	}
	if len(pos)%2 != 0 {
		return usagef("want KEY VALUE pairs, got %d argument(s)", len(pos))
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	var edits []configEdit
	for i := 0; i < len(pos); i += 2 {
		k, err := findConfigKey(pos[i], "set", func(k configKey) bool { return k.value != nil })
		if err != nil {
			return err
		}
		v, err := k.value(pos[i+1])
		if err != nil {
			return usagef("%s: %w", k.name, err)
		}
		edits = append(edits, configEdit{strings.Split(k.name, "."), v})
	}
	return applyConfigEdits(inv, *dir, edits)
}

func runConfigUnset(_ context.Context, inv *cli.Invocation) error {
	dir := inv.Flags.String("dir", "", "bundle directory written by ggprov init")
	pos, err := inv.Parse("KEY [KEY ...]", 1, -1)
	if err != nil {
		return err
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	var edits []configEdit
	for _, name := range pos {
		k, err := findConfigKey(name, "unset", func(k configKey) bool { return k.unset })
		if err != nil {
			return err
		}
		edits = append(edits, configEdit{path: strings.Split(k.name, ".")})
	}
	return applyConfigEdits(inv, *dir, edits)
}

// applyConfigEdits makes the edits to DIR/config.json and says what
// changed. An edit that would make it invalid is a usage mistake.
func applyConfigEdits(inv *cli.Invocation, dir string, edits []configEdit) error {
	for i, e := range edits {
		if slices.ContainsFunc(edits[:i], func(o configEdit) bool { return slices.Equal(o.path, e.path) }) {
			return usagef("%s given twice", strings.Join(e.path, "."))
		}
	}
	path := filepath.Join(dir, "config.json")
	// A broken file is no mistake of the arguments.
	if _, err := config.LoadConfig(path); err != nil {
		return err
	}
	err := editConfig(path, edits)
	var refused *refusedEdit
	if errors.As(err, &refused) {
		return &cli.UsageError{Err: err}
	}
	if err != nil {
		return err
	}
	for _, e := range edits {
		if e.value == nil {
			fmt.Fprintf(inv.Stdout, "config.json: %s removed\n", strings.Join(e.path, "."))
		} else {
			fmt.Fprintf(inv.Stdout, "config.json: %s %v\n", strings.Join(e.path, "."), e.value)
		}
	}
	return nil
}

// configEdit sets the field at path of config.json to value, or removes
// it when value is nil.
type configEdit struct {
	path  []string
	value any
}

// refusedEdit is an edit that would make config.json invalid.
type refusedEdit struct{ err error }

func (e *refusedEdit) Error() string { return e.err.Error() }
func (e *refusedEdit) Unwrap() error { return e.err }

// editConfig makes edits to the config.json at path, keeping every other
// field as it is, and replaces the file if the result is a valid
// config.json; otherwise it leaves it alone and returns a *refusedEdit.
func editConfig(path string, edits []configEdit) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := json.RawMessage(data)
	for _, e := range edits {
		if doc, err = editJSON(doc, e.path, e.value); err != nil {
			return fmt.Errorf("%s: %s: %w", path, strings.Join(e.path, "."), err)
		}
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if _, err := config.ParseConfig(out.Bytes()); err != nil {
		return &refusedEdit{fmt.Errorf("refused, config.json unchanged: %w", err)}
	}
	return replaceFile(path, out.Bytes())
}

// editJSON sets (or, for a nil value, removes) the field at path of the
// JSON object doc, making the objects on the way as needed.
func editJSON(doc json.RawMessage, path []string, value any) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(doc, &obj); err != nil {
		return nil, errors.New("not inside a JSON object")
	}
	if obj == nil {
		obj = map[string]json.RawMessage{}
	}
	field, rest := path[0], path[1:]
	switch {
	case len(rest) > 0:
		child, ok := obj[field]
		if !ok && value == nil {
			return doc, nil
		}
		if !ok {
			child = json.RawMessage("{}")
		}
		child, err := editJSON(child, rest, value)
		if err != nil {
			return nil, err
		}
		obj[field] = child
	case value == nil:
		delete(obj, field)
	default:
		v, err := marshal(value)
		if err != nil {
			return nil, err
		}
		obj[field] = v
	}
	return marshal(obj)
}

// marshal is json.Marshal without escaping <, > and &, which config.json
// values (such as pkcs11: URIs) may hold.
func marshal(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
