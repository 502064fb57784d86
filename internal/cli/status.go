package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvxproject/kvx/pkg/transport"
)

type statusOptions struct {
	common
	key  string
	json bool
	wait waitFlags
}

func newStatusCmd() *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show which nodes have a key's current checksum, and why the others do not",
		Long: `Show a key's current checksum, when and by whom it was pushed, its stop
switch, the acknowledging nodes that froze their file, how many
acknowledging nodes have the checksum, and each that does not with its
result, why, and how long it has been behind. A key without a checksum
exits 1.

With -wait D, wait until -want N nodes (default all: every node that
acknowledges the key, at least one) have the current checksum, printing a
line each time the picture changes; exit 0 once reached, 1 with the
laggards listed after D (or on SIGINT/SIGTERM). The wait holds a blocking
query on the key's folder: it reads again only when something changes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(cmd, o) },
	}
	f := cmd.Flags()
	o.register(f, withPrefix)
	f.StringVarP(&o.key, "key", "k", "", "key name under the prefix (required)")
	f.BoolVar(&o.json, "json", false, "print JSON (with -wait: the final status; progress goes to the log)")
	o.wait.register(f, "wait", "wait up to this long for -want nodes to have the current checksum")
	return cmd
}

func runStatus(cmd *cobra.Command, o *statusOptions) error {
	if err := o.requireKey(cmd, o.key); err != nil {
		return err
	}
	if err := o.wait.check(cmd); err != nil {
		return err
	}
	s, err := o.open(cmd)
	if err != nil {
		return err
	}
	defer s.close()
	w := cmd.OutOrStdout()
	prefix := strings.Trim(o.prefix, "/")
	if o.wait.timeout <= 0 {
		st, err := s.Status(cmd.Context(), o.key)
		if err != nil && !errors.Is(err, transport.ErrNoKey) {
			return err
		}
		if o.json {
			printJSON(w, st)
		} else {
			printStatus(w, prefix, st, time.Now())
		}
		return err
	}
	start := time.Now()
	st, err := o.wait.run(cmd, s, o.key, "", o.json)
	if o.json {
		printJSON(w, struct {
			transport.Status
			Want    string `json:"want"`
			Reached bool   `json:"reached"`
		}{st, transport.WantString(o.wait.n), err == nil})
		return err
	}
	if st.Key != "" {
		fmt.Fprintln(w)
		printStatus(w, prefix, st, time.Now())
	}
	if err == nil {
		fmt.Fprintln(w, reachedLine(st, o.wait.n, time.Since(start)))
	}
	return err
}

func printJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintf(w, "%s\n", b)
}

// printStatus writes a status as kvx status shows it; durations are
// relative to now.
func printStatus(w io.Writer, prefix string, st transport.Status, now time.Time) {
	cs := st.Checksum
	if cs == "" {
		cs = "(none)"
	}
	fmt.Fprintf(w, "key       %s/%s\nchecksum  %s\n", prefix, st.Key, cs)
	if st.Pushed != "" {
		by := ""
		if st.PushedBy != "" {
			by = " by " + st.PushedBy
		}
		note := ""
		if st.PushedEstimated {
			note = " (estimated: the first acknowledgement of it; written without kvx in)"
		}
		fmt.Fprintf(w, "pushed    %s%s, %s ago%s\n", st.Pushed, by, ago(st.Pushed, now), note)
	}
	if st.Stop != "" {
		fmt.Fprintf(w, "stopped   %s\n", st.Stop)
	}
	for i, f := range st.Frozen {
		if i == 20 {
			fmt.Fprintf(w, "frozen    ... and %d more\n", len(st.Frozen)-i)
			break
		}
		fmt.Fprintf(w, "frozen    %s %s: %s\n", f.Node, f.File, f.Reason)
	}
	fmt.Fprintf(w, "delivered %d/%d nodes\n", st.Current, st.Nodes)
	if len(st.Behind) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRESULT\tHAS\tBEHIND\tACKED\tWHY")
	for _, a := range st.Behind {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Node, a.Result, short(a.Checksum), ago(a.BehindSince, now), a.Time, why(a))
	}
	tw.Flush()
}

// why says what holds a laggard back.
func why(a transport.Laggard) string {
	switch {
	case a.Frozen != "":
		return "frozen: " + a.Frozen
	case a.Error != "":
		return a.Error
	case a.VersionsBehind > 1:
		return fmt.Sprintf("has an older version (%d pushes behind)", a.VersionsBehind)
	}
	return "has an older version"
}

// ago is how long before now an RFC 3339 time was, compact; "-" unknown.
func ago(ts string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return "-"
	}
	d := max(now.Sub(t), 0).Round(time.Second)
	switch {
	case d < time.Hour:
		return d.String()
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

// ---- waiting: kvx status -wait and kvx in -wait-delivered

// waitFlags are -wait (or -wait-delivered) and -want.
type waitFlags struct {
	name    string // the flag naming the timeout
	timeout time.Duration
	want    string
	n       int // -want parsed: 0 means all
}

func (w *waitFlags) register(f *pflag.FlagSet, name, help string) {
	w.name = name
	f.DurationVar(&w.timeout, name, 0, help+"; exit 1 with the laggards listed when it passes")
	f.StringVar(&w.want, "want", "all", "with -"+name+": nodes that must have the checksum, a number or all (every node that acknowledges the key, at least one)")
}

// check parses -want; it needs the timeout flag.
func (w *waitFlags) check(cmd *cobra.Command) error {
	switch {
	case w.timeout < 0:
		return usageError{fmt.Errorf("-%s %v: want a positive duration", w.name, w.timeout)}
	case cmd.Flags().Changed("want") && w.timeout == 0:
		return usageError{fmt.Errorf("-want needs -%s DURATION", w.name)}
	case w.want == "all":
		w.n = 0
		return nil
	}
	n, err := strconv.Atoi(w.want)
	if err != nil || n < 1 {
		return usageError{fmt.Errorf("-want %q: want a number of nodes (1 or more) or all", w.want)}
	}
	w.n = n
	return nil
}

// run waits for the nodes, printing a progress line on stdout each time
// the picture changes (to the log instead when stdout carries JSON). sum,
// if set, is the version waited for: another push ends the wait.
func (w *waitFlags) run(cmd *cobra.Command, s *session, key, sum string, quiet bool) (transport.Status, error) {
	out := cmd.OutOrStdout()
	progress := func(st transport.Status) {
		line := progressLine(st, w.n)
		if quiet {
			s.logger.Info("waiting", "key", key, "progress", line)
			return
		}
		fmt.Fprintln(out, line)
	}
	return s.Wait(cmd.Context(), transport.WaitOptions{Key: key, Want: w.n, Checksum: sum, Timeout: w.timeout, Progress: progress, Logger: s.logger})
}

// progressLine is one line of a wait's progress:
// "3f2a9c1b0d4e  delivered 17/20 nodes, want all; 3 behind: web-3 (frozen), web-7 (error), web-9".
func progressLine(st transport.Status, want int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  delivered %d/%d nodes, want %s", short(st.Checksum), st.Current, st.Nodes, transport.WantString(want))
	if st.Stop != "" {
		fmt.Fprintf(&b, "; stopped: %s", st.Stop)
	}
	if len(st.Behind) > 0 {
		fmt.Fprintf(&b, "; %d behind: %s", len(st.Behind), st.BehindList(10))
	}
	return b.String()
}

func reachedLine(st transport.Status, want int, took time.Duration) string {
	return fmt.Sprintf("reached: %d/%d nodes have %s (want %s) after %v", st.Current, st.Nodes, st.Checksum, transport.WantString(want), took.Round(time.Millisecond))
}

// afterPush is kvx in -wait-delivered: wait for the nodes to have what the
// push left in KV, and show the laggards when they do not.
func (w *waitFlags) afterPush(cmd *cobra.Command, s *session, prefix string, res transport.PushResult) error {
	if w.timeout <= 0 {
		return nil
	}
	start := time.Now()
	st, err := w.run(cmd, s, res.Key, res.Checksum, false)
	out := cmd.OutOrStdout()
	if err != nil {
		if st.Key != "" && len(st.Behind) > 0 {
			printStatus(out, strings.Trim(prefix, "/"), st, time.Now())
		}
		return fmt.Errorf("pushed, but not delivered: %w", err)
	}
	fmt.Fprintln(out, reachedLine(st, w.n, time.Since(start)))
	return nil
}
