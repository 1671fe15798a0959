package main

import (
	"go/parser"
	"go/token"
	"regexp"
	"strings"
	"testing"
)

// TestEveryCommandHasHelp: `ggprov -h` lists every command of the table,
// and each answers -h and `help` with its usage.
func TestEveryCommandHasHelp(t *testing.T) {
	paths := program().Paths()
	want := []string{"init", "subscription add", "config get", "config set", "config unset", "server-cert", "keys create", "ggcloud-cert", "register", "release keygen", "release sign", "release show", "release pcr"}
	if strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Errorf("commands %q, want %q", paths, want)
	}
	code, usage, stderr := ggprov("-h")
	if code != 0 || stderr != "" {
		t.Fatalf("ggprov -h: exit %d, stderr %q", code, stderr)
	}
	for _, path := range paths {
		if !strings.Contains(usage, "  ggprov "+path) {
			t.Errorf("ggprov -h does not list %q:\n%s", path, usage)
		}
		for _, args := range [][]string{
			append(strings.Fields(path), "-h"),
			append([]string{"help"}, strings.Fields(path)...),
		} {
			code, stdout, _ := ggprov(args...)
			if code != 0 || !strings.HasPrefix(stdout, "usage: ggprov "+path) {
				t.Errorf("ggprov %s: exit %d, stdout %q; want 0 and its usage", strings.Join(args, " "), code, stdout)
			}
		}
	}
}

// TestHelpListsOptions: a command's -h (and `help COMMAND`) prints its
// options on stdout, and nothing on stderr.
func TestHelpListsOptions(t *testing.T) {
	tests := []struct {
		path    string
		options []string
	}{
		{"init", []string{"Options:", "-dir string", "-device value", "-key-store string", "(default \"file\")", "-tpm-device string", "-pkcs11-module string", "-server-name value"}},
		{"keys create", []string{"Options:", "-uri string", "-type string", "-usage string", "(default \"sign\")", "-subject string", "-tpm-device string", "-pkcs11-pin-source string"}},
		{"subscription add", []string{"Options:", "-if-missing"}},
	}
	for _, tt := range tests {
		for _, args := range [][]string{
			append(strings.Fields(tt.path), "-h"),
			append(strings.Fields(tt.path), "--help"),
			append([]string{"help"}, strings.Fields(tt.path)...),
		} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, stdout, stderr := ggprov(args...)
				if code != 0 || stderr != "" {
					t.Errorf("exit %d, stderr %q; want 0 and nothing", code, stderr)
				}
				for _, w := range tt.options {
					if !strings.Contains(stdout, w) {
						t.Errorf("stdout lacks %q:\n%s", w, stdout)
					}
				}
			})
		}
	}
}

// TestUsageMistakes: a mistake exits 2 naming it once, with the usage of
// the command (or the list of valid ones) after it.
func TestUsageMistakes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown command", []string{"frobnicate"}, []string{`ggprov: unknown command "frobnicate"; want one of: init, subscription, config, server-cert, keys, ggcloud-cert, register, release`, "  ggprov init --dir DIR"}},
		{"unknown subcommand", []string{"subscription", "remove"}, []string{`ggprov: unknown command "subscription remove"; want one of: subscription add`}},
		{"group without subcommand", []string{"keys"}, []string{"ggprov: keys: want a subcommand: create", "  ggprov keys create --uri URI"}},
		{"stray argument", []string{"server-cert", "--dir", "d", "extra"}, []string{`ggprov: server-cert: unexpected argument "extra"`, "usage: ggprov server-cert --dir DIR"}},
		{"stray argument to subscription add", []string{"subscription", "add", "--dir", "d", "--source", "a", "--subject", "t", "--target", "b", "extra"},
			[]string{`ggprov: subscription add: unexpected argument "extra"`}},
		{"missing flag", []string{"ggcloud-cert"}, []string{"ggprov: ggcloud-cert: --dir is required\nusage: ggprov ggcloud-cert --dir DIR"}},
		{"bad flag of init", []string{"init", "--colour"}, []string{"ggprov: init: flag provided but not defined: -colour\nusage: ggprov init"}},
		{"bad flag of keys create", []string{"keys", "create", "--colour"}, []string{"ggprov: keys create: flag provided but not defined: -colour\nusage: ggprov keys create"}},
		{"bad flag value of init", []string{"init", "--mqtt-port", "x"}, []string{"ggprov: init: invalid value \"x\" for flag -mqtt-port: parse error\nusage: ggprov init"}},
		{"flag of keys create without its value", []string{"keys", "create", "--uri"}, []string{"ggprov: keys create: flag needs an argument: -uri\nusage: ggprov keys create"}},
		{"stray argument to init", []string{"init", "extra", "--dir", "d"}, []string{`ggprov: init: unexpected argument "extra"`, "usage: ggprov init"}},
		{"stray argument to keys create", []string{"keys", "create", "extra"}, []string{`ggprov: keys create: unexpected argument "extra"`, "usage: ggprov keys create"}},
		{"problems of keys create, one line each", []string{"keys", "create", "--uri", "x", "--type", "y"},
			[]string{"ggprov: keys create: --uri: ", "\nggprov: --type: ", "\nusage: ggprov keys create"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := ggprov(tt.args...)
			if code != 2 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "init: init:") || strings.Contains(stderr, "keys create: keys create:") {
				t.Errorf("command named twice:\n%s", stderr)
			}
		})
	}
}

// TestPackageDocNamesEveryCommand: the package comment describes every
// top-level command of the table and names no other.
func TestPackageDocNamesEveryCommand(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	top := map[string]bool{"help": true}
	for _, c := range program().Commands {
		top[c.Name] = true
		if !regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(c.Name) + `\s`).MatchString(doc) {
			t.Errorf("the package comment does not mention %q", c.Name)
		}
	}
	for _, m := range regexp.MustCompile("`ggprov ([a-z][a-z-]*)").FindAllStringSubmatch(doc, -1) {
		if !top[m[1]] {
			t.Errorf("the package comment names %q, which is no command", m[0])
		}
	}
}
