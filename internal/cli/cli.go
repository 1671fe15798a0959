// Package cli runs a command-line program from one table of commands.
// The table generates the usage text (of the program, of a command group
// and of a command: `-h`, `--help`, `help CMD`) and drives the dispatch,
// so what the usage says and what runs cannot disagree.
//
// Exit statuses follow one convention: 0 on success or help; 2 on a
// usage mistake (a UsageError, an unknown command, a bad flag), printed
// as "PROG: CMD: mistake" followed by the command's usage line; 1 on any
// other error, printed as "PROG: CMD: error", one "PROG: " line per line
// of the error (so each problem of an errors.Join reads on its own).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Command is one command of a program, or a group of subcommands.
type Command struct {
	// Name is the one word that selects the command: "init", "thing".
	Name string
	// Args is the synopsis of what follows the name, such as
	// "NAME --document FILE"; "" when it takes nothing.
	Args string
	// Summary is one line saying what the command does.
	Summary string
	// Help is optional further text, shown by CMD -h.
	Help string
	// Run runs the command; nil for a group, which has Subcommands. Its
	// errors leave out the command's name: Program.Run prefixes it.
	Run func(ctx context.Context, inv *Invocation) error
	// Subcommands of a group, such as "create" and "list" of "thing".
	Subcommands []Command
}

// Program is a command-line program: its name and its command table.
type Program struct {
	// Name is the program's name, the prefix of every error line.
	Name string
	// Globals is the synopsis of the global flags, such as "[--data DIR]".
	Globals string
	// Flags registers the global flags on a flag set. Run calls it for
	// the flags before the command and again for every command's own
	// flag set, so that global flags may also follow the command.
	Flags func(fs *flag.FlagSet)
	// Footer is text printed after the command list of the usage.
	Footer string
	// Commands is the command table.
	Commands []Command
}

// Invocation is one run of a command.
type Invocation struct {
	// Path is the command's names, such as "thing create".
	Path string
	// Args are the arguments after the command's names.
	Args []string
	// Stdout and Stderr are the program's output streams.
	Stdout, Stderr io.Writer
	// Flags is the command's flag set, holding the program's global
	// flags; the command defines its own flags on it and parses Args
	// with Parse. Its options are then part of the command's -h.
	Flags *flag.FlagSet
}

// Parse parses the invocation's arguments with its flag set; see Parse.
func (inv *Invocation) Parse(names string, min, max int) ([]string, error) {
	return Parse(inv.Flags, inv.Args, names, min, max)
}

// UsageError is a command-line mistake: exit status 2. Its text is the
// mistake alone ("--dir is required"); Run names the command.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError; format and args are as for fmt.Errorf.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Parse parses args as flags of fs and positional arguments, in any
// order; the positional arguments after "--" are taken as they are. It
// returns the positional arguments, of which there must be at least min
// and at most max (no limit when max < 0); names describes them in the
// error ("ID THING"). A bad flag is a UsageError; -h, -help and --help
// return flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string, names string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &UsageError{Err: err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	tooMany := max >= 0 && len(pos) > max
	switch {
	case !tooMany && len(pos) >= min:
		return pos, nil
	case names != "":
		return nil, Usagef("want %s, got %d argument(s)", names, len(pos))
	case tooMany:
		return nil, Usagef("unexpected argument %q", pos[max])
	default:
		return nil, Usagef("want %d argument(s), got %d", min, len(pos))
	}
}

// Run runs the command args name and returns the exit status.
func (p *Program) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	top := p.newFlagSet(p.Name)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p.writeUsage(stdout, nil, p.Commands)
			return 0
		}
		p.printError(stderr, err)
		p.writeUsage(stderr, nil, p.Commands)
		return 2
	}
	args = top.Args()
	if len(args) == 0 {
		p.writeUsage(stderr, nil, p.Commands)
		return 2
	}
	if args[0] == "help" {
		return p.help(ctx, top, args[1:], stdout, stderr)
	}
	path, cmd, rest, code := p.lookup(args, false, stdout, stderr)
	if cmd == nil {
		return code
	}
	return p.run(ctx, top, path, cmd, rest, stdout, stderr)
}

// help runs "help [CMD ...]": the usage of the program, a group or a
// command (which is CMD -h), on stdout.
func (p *Program) help(ctx context.Context, top *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || isHelp(args[0]) {
		p.writeUsage(stdout, nil, p.Commands)
		return 0
	}
	path, cmd, rest, code := p.lookup(args, true, stdout, stderr)
	switch {
	case cmd == nil:
		return code
	case len(rest) > 0:
		p.printError(stderr, fmt.Errorf("help %s: unexpected argument %q", strings.Join(path, " "), rest[0]))
		return 2
	}
	return p.run(ctx, top, path, cmd, []string{"-h"}, stdout, stderr)
}

// lookup finds the command args name. For an unknown name, a group's -h
// or a group named without a subcommand (a mistake, unless forHelp), it
// prints what it must and returns a nil command and the exit status.
func (p *Program) lookup(args []string, forHelp bool, stdout, stderr io.Writer) (path []string, cmd *Command, rest []string, code int) {
	list := p.Commands
	for {
		cmd = find(list, args[0])
		if cmd == nil {
			valid := make([]string, len(list))
			for i, c := range list {
				valid[i] = strings.Join(append(path[:len(path):len(path)], c.Name), " ")
			}
			p.printError(stderr, fmt.Errorf("unknown command %q; want one of: %s",
				strings.Join(append(path, args[0]), " "), strings.Join(valid, ", ")))
			p.writeUsage(stderr, path, list)
			return path, nil, nil, 2
		}
		path, args = append(path, cmd.Name), args[1:]
		if cmd.Run != nil {
			return path, cmd, args, 0
		}
		if len(args) == 0 && forHelp || len(args) > 0 && isHelp(args[0]) {
			p.writeUsage(stdout, path, cmd.Subcommands)
			return path, nil, nil, 0
		}
		if len(args) == 0 {
			p.printError(stderr, fmt.Errorf("%s: want a subcommand: %s", strings.Join(path, " "), names(cmd.Subcommands)))
			p.writeUsage(stderr, path, cmd.Subcommands)
			return path, nil, nil, 2
		}
		list = cmd.Subcommands
	}
}

// run runs a command and turns its error into the exit status. The
// global flags set before the command (on top) keep their values.
func (p *Program) run(ctx context.Context, top *flag.FlagSet, path []string, cmd *Command, args []string, stdout, stderr io.Writer) int {
	set := map[string]string{} // read before the command's flag set resets them
	top.Visit(func(f *flag.Flag) { set[f.Name] = f.Value.String() })
	name := strings.Join(path, " ")
	inv := &Invocation{Path: name, Args: args, Stdout: stdout, Stderr: stderr, Flags: p.newFlagSet(p.Name + " " + name)}
	for f, v := range set {
		_ = inv.Flags.Set(f, v)
	}
	err := cmd.Run(ctx, inv)
	var usageErr *UsageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		p.writeHelp(stdout, name, cmd, inv.Flags)
		return 0
	case errors.As(err, &usageErr):
		p.printError(stderr, named(name, err))
		fmt.Fprintf(stderr, "usage: %s\nRun '%s help %s' for more.\n", p.synopsis(name, cmd.Args), p.Name, name)
		return 2
	default:
		p.printError(stderr, named(name, err))
		return 1
	}
}

// newFlagSet returns a flag set with the global flags that prints
// nothing itself: Run prints errors and usage.
func (p *Program) newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if p.Flags != nil {
		p.Flags(fs)
	}
	return fs
}

// named prefixes err's text with the command's name; commands leave
// their name out of their errors.
func named(name string, err error) error { return fmt.Errorf("%s: %w", name, err) }

// printError writes err with every line prefixed "PROG: ".
func (p *Program) printError(w io.Writer, err error) {
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintf(w, "%s: %s\n", p.Name, line)
	}
}

// synopsis is "PROG [GLOBALS] PATH ARGS".
func (p *Program) synopsis(path, args string) string {
	return strings.Join(nonEmpty(p.Name, p.Globals, path, args), " ")
}

// writeUsage writes the usage of the program (path nil) or of a group:
// every command under it with its synopsis and summary.
func (p *Program) writeUsage(w io.Writer, path []string, list []Command) {
	group := strings.Join(path, " ")
	fmt.Fprintf(w, "usage: %s\n\nCommands:\n", p.synopsis(group, "COMMAND [ARGS]"))
	walk(list, path, func(path string, c *Command) {
		fmt.Fprintf(w, "  %s\n", strings.Join(nonEmpty(p.Name, path, c.Args), " "))
		if c.Summary != "" {
			fmt.Fprintf(w, "      %s\n", c.Summary)
		}
	})
	if group == "" && p.Footer != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(p.Footer))
	}
	fmt.Fprintf(w, "\nRun '%s help %s' for a command's options.\n", p.Name, strings.Join(nonEmpty(group, "COMMAND"), " "))
}

// writeHelp writes a command's usage: its synopsis, summary, help text
// and the options of the flag set it parsed.
func (p *Program) writeHelp(w io.Writer, name string, cmd *Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n", p.synopsis(name, cmd.Args))
	if cmd.Summary != "" {
		fmt.Fprintf(w, "\n%s\n", cmd.Summary)
	}
	if cmd.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.Help))
	}
	// A command that parsed its own flag set has printed its options.
	if !fs.Parsed() {
		return
	}
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprint(w, "\nOptions:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// walk calls fn for every runnable command of list, depth first, with
// its full path.
func walk(list []Command, path []string, fn func(path string, c *Command)) {
	for i := range list {
		c := &list[i]
		p := append(path[:len(path):len(path)], c.Name)
		if c.Run != nil {
			fn(strings.Join(p, " "), c)
		}
		walk(c.Subcommands, p, fn)
	}
}

// Paths returns the full names of every runnable command of the table,
// such as "thing create", in table order.
func (p *Program) Paths() []string {
	var paths []string
	walk(p.Commands, nil, func(path string, _ *Command) { paths = append(paths, path) })
	return paths
}

func find(list []Command, name string) *Command {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func names(list []Command) string {
	n := make([]string, len(list))
	for i, c := range list {
		n[i] = c.Name
	}
	return strings.Join(n, ", ")
}

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

func nonEmpty(parts ...string) []string {
	out := parts[:0:0]
	for _, s := range parts {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
