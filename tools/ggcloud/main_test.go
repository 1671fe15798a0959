package main

import (
	"go/parser"
	"go/token"
	"regexp"
	"strings"
	"testing"
)

// TestEveryCommandHasHelp: `ggcloud -h` lists every command of the table,
// and each answers -h and `help` with its usage and options.
func TestEveryCommandHasHelp(t *testing.T) {
	paths := program(&globals{}).Paths()
	if len(paths) != 26 {
		t.Errorf("%d commands in the table, want 26: %q", len(paths), paths)
	}
	code, usage, stderr := ggcloud("-h")
	if code != 0 || stderr != "" {
		t.Fatalf("ggcloud -h: exit %d, stderr %q", code, stderr)
	}
	for _, path := range paths {
		if !strings.Contains(usage, "  ggcloud "+path) {
			t.Errorf("ggcloud -h does not list %q:\n%s", path, usage)
		}
		for _, args := range [][]string{
			append(strings.Fields(path), "-h"),
			append([]string{"help"}, strings.Fields(path)...),
		} {
			code, stdout, stderr := ggcloud(args...)
			if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "usage: ggcloud [--data DIR] "+path) || !strings.Contains(stdout, "-data") {
				t.Errorf("ggcloud %s: exit %d, stdout %q, stderr %q; want 0 and its usage with --data", strings.Join(args, " "), code, stdout, stderr)
			}
		}
	}
}

// TestUsageMistakes: a mistake exits 2 naming it, with the usage of the
// command (or the list of valid ones) after it.
func TestUsageMistakes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown command", []string{"frobnicate"}, []string{`ggcloud: unknown command "frobnicate"; want one of: serve, thing, cert, policy, group, secret, function, connectivity, deployment`}},
		{"unknown subcommand", []string{"thing", "delete", "gw"}, []string{`ggcloud: unknown command "thing delete"; want one of: thing create, thing list`, "  ggcloud thing list"}},
		{"group without subcommand", []string{"group"}, []string{"ggcloud: group: want a subcommand: create, add-device, remove-device,", "  ggcloud group deploy ID"}},
		{"stray argument", []string{"thing", "list", "gw"}, []string{`ggcloud: thing list: unexpected argument "gw"`, "usage: ggcloud [--data DIR] thing list\n"}},
		{"missing argument", []string{"group", "remove-device", "g1"}, []string{"ggcloud: group remove-device: want ID THING, got 1 argument(s)", "usage: ggcloud [--data DIR] group remove-device ID THING\n"}},
		{"bad global flag", []string{"--colour", "thing", "list"}, []string{"ggcloud: flag provided but not defined: -colour", "usage: ggcloud [--data DIR] COMMAND"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := ggcloud(append([]string{"--data", t.TempDir()}, tt.args...)...)
			if code != 2 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
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
	for _, c := range program(&globals{}).Commands {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(c.Name) + `\b`).MatchString(doc) {
			t.Errorf("the package comment does not mention %q", c.Name)
		}
	}
	for _, m := range regexp.MustCompile("`ggcloud ([a-z][a-z-]*)").FindAllStringSubmatch(doc, -1) {
		if m[1] != "help" && !isCommand(m[1]) {
			t.Errorf("the package comment names %q, which is no command", m[0])
		}
	}
}

func isCommand(name string) bool {
	for _, c := range program(&globals{}).Commands {
		if c.Name == name {
			return true
		}
	}
	return false
}
