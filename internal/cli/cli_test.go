package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

// result is what a test command saw.
type result struct {
	data string   // the global --data
	pos  []string // its positional arguments
	name string   // its --name flag
}

// testProgram is a program with a group of two commands, a command with
// a variadic argument, a command that fails and one that parses its own
// flag set (and so prints its own options).
func testProgram(got *result) *Program {
	var data string
	return &Program{
		Name:    "prog",
		Globals: "[--data DIR]",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&data, "data", "default", "data directory")
		},
		Footer: "DIR is the data directory.",
		Commands: []Command{
			{Name: "thing", Subcommands: []Command{
				{Name: "create", Args: "NAME [--name N]", Summary: "create a thing", Help: "Creates NAME.",
					Run: func(_ context.Context, inv *Invocation) error {
						name := inv.Flags.String("name", "", "another name")
						pos, err := inv.Parse("NAME", 1, 1)
						if err != nil {
							return err
						}
						*got = result{data: data, pos: pos, name: *name}
						return nil
					}},
				{Name: "list", Summary: "list the things",
					Run: func(_ context.Context, inv *Invocation) error {
						if _, err := inv.Parse("", 0, 0); err != nil {
							return err
						}
						*got = result{data: data}
						fmt.Fprintln(inv.Stdout, "a\nb")
						return nil
					}},
			}},
			{Name: "set", Args: "KEY VALUE...", Summary: "set values",
				Run: func(_ context.Context, inv *Invocation) error {
					pos, err := inv.Parse("KEY VALUE...", 2, -1)
					if err == nil {
						*got = result{data: data, pos: pos}
					}
					return err
				}},
			{Name: "fail", Summary: "fail at run time",
				Run: func(_ context.Context, inv *Invocation) error {
					if _, err := inv.Parse("", 0, 0); err != nil {
						return err
					}
					return errors.Join(errors.New("first problem"), errors.New("second problem"))
				}},
			{Name: "own", Summary: "parse its own flags",
				Run: func(_ context.Context, inv *Invocation) error {
					fs := flag.NewFlagSet("prog own", flag.ContinueOnError)
					fs.SetOutput(inv.Stderr)
					fs.Bool("loud", false, "be loud")
					if err := fs.Parse(inv.Args); err != nil {
						if errors.Is(err, flag.ErrHelp) {
							return err
						}
						return Usagef("%v", err)
					}
					return nil
				}},
		},
	}
}

func runProg(args ...string) (code int, stdout, stderr string, got result) {
	var out, errOut bytes.Buffer
	code = testProgram(&got).Run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String(), got
}

var allCommands = []string{"prog thing create NAME [--name N]", "prog thing list", "prog set KEY VALUE...", "prog fail", "prog own"}

func TestUsageAndHelp(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string // each must appear
		stderr     []string
		notInOut   []string // must not appear on stdout
		quietOther bool     // nothing on the other stream
	}{
		{name: "no command", args: nil, code: 2, stderr: append([]string{"usage: prog [--data DIR] COMMAND", "DIR is the data directory."}, allCommands...)},
		{name: "-h", args: []string{"-h"}, stdout: append([]string{"usage: prog", "create a thing", "list the things"}, allCommands...), quietOther: true},
		{name: "--help", args: []string{"--help"}, stdout: allCommands, quietOther: true},
		{name: "help", args: []string{"help"}, stdout: allCommands, quietOther: true},
		{name: "help -h", args: []string{"help", "-h"}, stdout: allCommands, quietOther: true},
		{name: "group -h", args: []string{"thing", "-h"},
			stdout: []string{"usage: prog [--data DIR] thing COMMAND", "prog thing create NAME", "prog thing list"}, notInOut: []string{"prog set", "DIR is the data"}, quietOther: true},
		{name: "help group", args: []string{"help", "thing"}, stdout: []string{"prog thing create NAME", "prog thing list"}, notInOut: []string{"prog set"}, quietOther: true},
		{name: "command -h", args: []string{"thing", "create", "-h"},
			stdout: []string{"usage: prog [--data DIR] thing create NAME [--name N]", "create a thing", "Creates NAME.", "-name", "-data"}, quietOther: true},
		{name: "command --help after an argument", args: []string{"thing", "create", "x", "--help"}, stdout: []string{"usage: prog [--data DIR] thing create", "-name"}, quietOther: true},
		{name: "help command", args: []string{"help", "thing", "create"}, stdout: []string{"usage: prog [--data DIR] thing create NAME", "-name"}, quietOther: true},
		{name: "help command with its own flags", args: []string{"help", "own"}, stdout: []string{"usage: prog [--data DIR] own", "parse its own flags"},
			stderr: []string{"-loud"}, notInOut: []string{"Options:"}},
		{name: "help of an unknown command", args: []string{"help", "frob"}, code: 2, stderr: []string{`prog: unknown command "frob"`}},
		{name: "help with a stray argument", args: []string{"help", "fail", "x"}, code: 2, stderr: []string{`unexpected argument "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr, _ := runProg(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, w := range tt.notInOut {
				if strings.Contains(stdout, w) {
					t.Errorf("stdout has %q:\n%s", w, stdout)
				}
			}
			if tt.quietOther && stderr != "" {
				t.Errorf("stderr %q, want nothing", stderr)
			}
		})
	}
}

func TestMistakes(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		stderr []string
	}{
		{"unknown command", []string{"frob"}, []string{`prog: unknown command "frob"; want one of: thing, set, fail, own`, "prog thing list"}},
		{"unknown subcommand", []string{"thing", "delete", "x"}, []string{`prog: unknown command "thing delete"; want one of: thing create, thing list`, "prog thing create NAME"}},
		{"group without a subcommand", []string{"thing"}, []string{"prog: thing: want a subcommand: create, list", "prog thing list"}},
		{"missing argument", []string{"thing", "create"}, []string{"prog: thing create: want NAME, got 0 argument(s)\nusage: prog [--data DIR] thing create NAME [--name N]\n"}},
		{"stray argument", []string{"thing", "list", "x"}, []string{`prog: thing list: unexpected argument "x"`, "usage: prog [--data DIR] thing list\n", "prog help thing list"}},
		{"stray argument after --", []string{"thing", "list", "--", "-x"}, []string{`prog: thing list: unexpected argument "-x"`}},
		{"too many arguments", []string{"thing", "create", "a", "b"}, []string{"prog: thing create: want NAME, got 2 argument(s)"}},
		{"too few of many", []string{"set", "k"}, []string{"prog: set: want KEY VALUE..., got 1 argument(s)"}},
		{"unknown flag", []string{"thing", "list", "--colour"}, []string{"prog: thing list: flag provided but not defined: -colour"}},
		{"unknown global flag", []string{"--colour", "thing", "list"}, []string{"prog: flag provided but not defined: -colour", "usage: prog"}},
		{"bad flag of a command with its own flag set", []string{"own", "--quiet"}, []string{"prog: own: flag provided but not defined: -quiet\nusage: prog"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr, _ := runProg(tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if stdout != "" {
				t.Errorf("stdout %q on a mistake", stdout)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "own: own:") {
				t.Errorf("command named twice:\n%s", stderr)
			}
		})
	}
}

func TestRuntimeErrorIsOneLinePerProblem(t *testing.T) {
	code, stdout, stderr, _ := runProg("fail")
	if want := "prog: fail: first problem\nprog: second problem\n"; code != 1 || stderr != want || stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, want)
	}
}

func TestDispatch(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		want   result
		stdout string
	}{
		{"default global", []string{"thing", "list"}, result{data: "default"}, "a\nb\n"},
		{"global before the command", []string{"--data", "d1", "thing", "list"}, result{data: "d1"}, "a\nb\n"},
		{"global after the command", []string{"thing", "list", "--data", "d2"}, result{data: "d2"}, "a\nb\n"},
		{"flags and arguments in any order", []string{"thing", "create", "--name", "n", "gw", "--data", "d"}, result{data: "d", pos: []string{"gw"}, name: "n"}, ""},
		{"argument after --", []string{"thing", "create", "--", "-gw"}, result{data: "default", pos: []string{"-gw"}}, ""},
		{"variadic", []string{"set", "a", "1", "b", "2"}, result{data: "default", pos: []string{"a", "1", "b", "2"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr, got := runProg(tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || stdout != tt.stdout {
				t.Errorf("got %+v, stdout %q; want %+v, %q", got, stdout, tt.want, tt.stdout)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	var got result
	if p := testProgram(&got).Paths(); strings.Join(p, ",") != "thing create,thing list,set,fail,own" {
		t.Errorf("Paths() = %q", p)
	}
}
