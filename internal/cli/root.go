package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"context"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes, documented in the README.
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitRefused = 3 // verification refused: checksum, stop key, too few lines
)

// usageError marks bad command-line input.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitWith ends a tool with a given code and nothing printed: render -exec
// ends with its child's code.
type exitWith struct{ code int }

func (e exitWith) Error() string { return fmt.Sprintf("exit code %d", e.code) }

// errRefused is wrapped by errors that must exit with code 3.
var errRefused = errors.New("refused")

func exitCode(err error, stderr io.Writer) int {
	return exitCodeFor("kvx", err, stderr)
}

// exitCodeFor maps err to an exit code, printing it to stderr after the
// tool's name.
func exitCodeFor(tool string, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ew exitWith
	if errors.As(err, &ew) {
		return ew.code
	}
	fmt.Fprintf(stderr, "%s: %v\n", tool, err)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, errRefused):
		return exitRefused
	}
	return exitError
}

// Version is the version the binary reports; main sets it from its
// build-time -ldflags "-X main.version=...".
var Version = "dev"

// Main runs one tool (the name of its main: "kvx", or a tool mounted both
// as its own binary and as a kvx subcommand) with args, and returns its exit
// code. Every main is this call and os.Exit.
func Main(ctx context.Context, tool string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	build, ok := tools[tool]
	if !ok {
		return exitCodeFor(tool, fmt.Errorf("no such tool %q", tool), stderr)
	}
	return exitCodeFor(tool, runTool(ctx, build(), args, stdin, stdout, stderr), stderr)
}

// tools are the commands that have a main of their own; each builds the same
// cobra command that newKVXCmd mounts under kvx.
var tools = map[string]func() *cobra.Command{
	"kvx":      newKVXCmd,
	"render":   newRenderCmd,
	"git2kv":   newGit2KVCmd,
	"hostsgen": newHostsgenCmd,
}

// execute builds the kvx command tree and runs args against it.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runTool(ctx, newKVXCmd(), args, stdin, stdout, stderr)
}

// runTool prepares root as a top-level command (I/O, Consul-style single-dash
// flags, KVX_ environment, usage errors) and runs args against it.
func runTool(ctx context.Context, root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	root.SilenceUsage = true
	root.SilenceErrors = true
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		return flagsFromEnv(cmd)
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetArgs(consulStyleArgs(root, args))
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		return usageError{err}
	}
	return err
}

// newKVXCmd is the kvx command tree.
func newKVXCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "kvx",
		Short: "Move configuration to every machine of a fleet",
	}
	root.AddCommand(newACLCmd())
	root.AddCommand(newServerCmd(), newAgentCmd(), newVersionCmd(), newBenchCmd(),
		newInCmd(), newOutCmd(), newStatusCmd(), newStopCmd(), newStartCmd(),
		newFreezeCmd(), newUnfreezeCmd(), newCopyCmd(), newRawCmd(), newDemoCmd(),
		newRenderCmd(), newEnvCmd(), newGit2KVCmd(), newLockCmd(), newEventCmd(), newWatchCmd(), newHostsgenCmd(),
		newTLSCmd())
	return root
}

// consulStyleArgs lets flags be written Consul's way, with one dash
// (-data-dir), as well as with two: a single-dash word that names a long flag
// of the tree gets its second dash.
func consulStyleArgs(root *cobra.Command, args []string) []string {
	long := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	start := trailingCommandStart(root, args)
	out := make([]string, 0, len(args))
	for i, a := range args[:start] {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && long[name] {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return append(out, args[start:]...)
}

// trailingCommand marks a command whose positional arguments end with a
// command line of its own (kvx lock, kvx watch): that command's words are
// not ours, and consulStyleArgs leaves them as they are.
const trailingCommand = "kvx-trailing-command"

// trailingCommandStart returns where the positional arguments of such a
// command begin in args (len(args) for any other command).
func trailingCommandStart(root *cobra.Command, args []string) int {
	c, i := root, 0
	for ; i < len(args); i++ {
		var sub *cobra.Command
		for _, s := range c.Commands() {
			if s.Name() == args[i] {
				sub = s
			}
		}
		if sub == nil {
			break
		}
		c = sub
	}
	if c.Annotations[trailingCommand] == "" {
		return len(args)
	}
	for i < len(args) {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			return i
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := c.Flags().Lookup(name)
		if f == nil && len(name) == 1 {
			f = c.Flags().ShorthandLookup(name)
		}
		i++
		if f != nil && !hasValue && f.NoOptDefVal == "" {
			i++ // its value is the next word
		}
	}
	return len(args)
}

// flagsFromEnv fills every flag the user did not set from KVX_<FLAG_NAME>
// (upper case, dashes as underscores): flag > environment > default. A flag
// set from the environment counts as given, so it satisfies a required
// flag (KVX_KEY for -k).
func flagsFromEnv(cmd *cobra.Command) error {
	fs := cmd.Flags()
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := "KVX_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if err = fs.Set(f.Name, v); err != nil {
			err = usageError{fmt.Errorf("%s=%q: %w", name, v, err)}
		}
	})
	return err
}

// newLogger builds the slog logger for a -log-level value.
func newLogger(w io.Writer, level string, json bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("log level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: l}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
