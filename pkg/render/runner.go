package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/metrics"
)

// Wait is a quiescence window: after a change, render once no further
// change came for Min, or at the latest Max after the first change.
type Wait struct{ Min, Max time.Duration }

// Target is one template with where its output goes and what runs after.
type Target struct {
	Template    *Template
	Destination string
	Command     string        // run (sh -c) after a pass that changed the file
	Check       string        // run (sh -c) on the staged file before it replaces the target; {{.Path}} is its path
	Timeout     time.Duration // for Command and Check; default 30s
	File        atomicfile.Options
	Backup      bool // keep the previous file as <destination>.bak
	Wait        Wait // this template's own quiescence: its new output is written once it has not changed for Min (at most Max after it first changed)

	used, missing []Dep  // of the last execution
	written       []byte // the output last written (or found already in place)
	pending       []byte // with Wait: the new output being held
	pendingFirst  time.Time
	pendingLast   time.Time
}

// Options tune a Runner.
type Options struct {
	Once        bool          // render every template once, run the commands, return
	OnceTimeout time.Duration // with Once: give up when data is still missing after this; default 10s
	// ErrOnFailedLookup (consul-template's err_on_failed_lookup): a key()
	// whose key the server says does not exist is an error at once, in
	// both modes, instead of a wait for the key.
	ErrOnFailedLookup bool
	Dry               bool // write outputs to Stdout instead of the destinations
	Wait              Wait
	MissingLog        time.Duration // long-running: log what a template still waits for this often; default 30s
	Watch             WatchOptions
	Stdout            io.Writer
	Logger            *slog.Logger
	Metrics           metrics.Sink
	// OnPass, if set, is called after each pass: complete when no template
	// missed data, with the destinations written (the -exec supervisor
	// starts its child after the first complete pass and reloads it when a
	// file was written).
	OnPass func(complete bool, written []string)
}

// MissingError lists, per template, the data a -once render never got, or
// with ErrOnFailedLookup the keys found not to exist.
type MissingError struct {
	After   time.Duration
	Missing map[string][]Dep // template name -> dependencies
	Lookup  bool             // the dependencies were fetched and do not exist
}

func (e *MissingError) Error() string {
	var b strings.Builder
	if e.Lookup {
		b.WriteString("lookup failed (err_on_failed_lookup), no such key:")
	} else {
		fmt.Fprintf(&b, "data still missing after %s:", e.After)
	}
	names := make([]string, 0, len(e.Missing))
	for n := range e.Missing {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, d := range e.Missing[n] {
			fmt.Fprintf(&b, "\n  %s needs %s", n, d)
		}
	}
	return b.String()
}

// firstAnswersWait bounds how long a pass waits for the dependencies still
// awaiting their first answer once others have arrived.
const firstAnswersWait = 2 * time.Second

// ErrCheckFailed is wrapped by a -check that refused a staged file.
var ErrCheckFailed = errors.New("check failed")

// Runner renders targets from a Source, again on every change of the data
// they use.
type Runner struct {
	targets []*Target
	o       Options
	brain   *Brain
	watcher *Watcher
}

// NewRunner prepares targets for Run.
func NewRunner(src Source, targets []*Target, o Options) *Runner {
	if o.OnceTimeout <= 0 {
		o.OnceTimeout = 10 * time.Second
	}
	if o.MissingLog <= 0 {
		o.MissingLog = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Discard
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Watch.Logger == nil {
		o.Watch.Logger = o.Logger
	}
	b := NewBrain()
	return &Runner{targets: targets, o: o, brain: b, watcher: NewWatcher(src, b, o.Watch)}
}

// Stats are the watcher's counters.
func (r *Runner) Stats() Stats { return r.watcher.Stats() }

// passResult is what one pass did.
type passResult struct {
	missing  map[string][]Dep
	used     []Dep
	written  []string
	commands []string
	errs     []error
	wake     time.Duration // a template's quiescence ends in this long (0: none held)
}

// Run renders until ctx is done, or with Once until every template has
// been rendered once (or OnceTimeout passed with data still missing).
func (r *Runner) Run(ctx context.Context) error {
	defer r.watcher.Stop()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var onceDeadline <-chan time.Time
	if r.o.Once {
		t := time.NewTimer(r.o.OnceTimeout)
		defer t.Stop()
		onceDeadline = t.C
	}
	missingLog := time.NewTicker(r.o.MissingLog)
	defer missingLog.Stop()
	var last passResult
	var wake <-chan time.Time
	for {
		res := r.pass(ctx)
		var wakeTimer *time.Timer
		if res.wake > 0 {
			wakeTimer = time.NewTimer(res.wake)
			wake = wakeTimer.C
		}
		last = res
		r.watcher.Watch(wctx, res.used)
		if r.o.OnPass != nil {
			r.o.OnPass(len(res.missing) == 0 && len(res.errs) == 0, res.written)
		}
		if len(res.errs) > 0 && r.o.Once {
			return errors.Join(res.errs...)
		}
		if failed := r.failedLookups(res.missing); len(failed) > 0 {
			return &MissingError{After: time.Since(start).Round(time.Millisecond), Missing: failed, Lookup: true}
		}
		if r.o.Once && len(res.missing) == 0 {
			if r.o.Dry {
				r.printDeps(res.used)
			}
			return nil
		}
		// Wait for a change, then for the data to settle.
		err := r.await(ctx, onceDeadline, missingLog.C, wake, last.missing)
		if wakeTimer != nil {
			wakeTimer.Stop()
		}
		wake = nil
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &MissingError{After: time.Since(start).Round(time.Millisecond), Missing: last.missing}
		}
	}
}

// await waits for what starts the next pass: a change (then the first
// answers and the quiescence window) or a template's own quiescence
// ending; meanwhile it logs the missing data every tick of missingLog. It
// returns an error when ctx or the -once deadline ended the wait.
func (r *Runner) await(ctx context.Context, onceDeadline, missingLog, wake <-chan time.Time, missing map[string][]Dep) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-onceDeadline:
			return errOnceDeadline
		case <-missingLog:
			r.logMissing(missing)
			continue
		case <-wake:
			return nil
		case err := <-r.watcher.Errors():
			r.o.Logger.Warn("fetch failed", "err", err)
			continue
		case <-r.watcher.Changed():
		}
		r.watcher.Settled(ctx, firstAnswersWait)
		if !r.settle(ctx, onceDeadline) {
			return errOnceDeadline
		}
		return nil
	}
}

var errOnceDeadline = errors.New("-once deadline")

// settle waits out the quiescence window; false when ctx or the -once
// deadline ended it.
func (r *Runner) settle(ctx context.Context, deadline <-chan time.Time) bool {
	w := r.o.Wait
	if w.Min <= 0 {
		return true
	}
	if w.Max < w.Min {
		w.Max = 4 * w.Min // consul-template's default max
	}
	hard := time.NewTimer(w.Max)
	defer hard.Stop()
	for {
		quiet := time.NewTimer(w.Min)
		select {
		case <-ctx.Done():
			quiet.Stop()
			return false
		case <-deadline:
			quiet.Stop()
			return false
		case <-hard.C:
			quiet.Stop()
			return true
		case <-quiet.C:
			return true
		case <-r.watcher.Changed():
			quiet.Stop()
		}
	}
}

// failedLookups returns, with ErrOnFailedLookup, the missing dependencies
// the server answered do not exist.
func (r *Runner) failedLookups(missing map[string][]Dep) map[string][]Dep {
	if !r.o.ErrOnFailedLookup {
		return nil
	}
	out := map[string][]Dep{}
	for name, ds := range missing {
		for _, d := range ds {
			if r.watcher.Absent(d) {
				out[name] = append(out[name], d)
			}
		}
	}
	return out
}

func (r *Runner) logMissing(missing map[string][]Dep) {
	for name, ds := range missing {
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.String()
		}
		r.o.Logger.Info("waiting for data", "template", name, "missing", strings.Join(ids, ", "))
	}
}

func (r *Runner) printDeps(used []Dep) {
	fmt.Fprintf(r.o.Stdout, "# %d dependencies\n", len(used))
	for _, d := range used {
		fmt.Fprintf(r.o.Stdout, "#   %s\n", d)
	}
}

// pass executes every template, writes those whose data is complete and
// whose output changed, then runs their commands, each distinct command
// once, in the order first needed.
func (r *Runner) pass(ctx context.Context) passResult {
	begin := time.Now()
	res := passResult{missing: map[string][]Dep{}}
	seen := map[string]bool{}
	for _, t := range r.targets {
		// A template whose last execution missed data that is still
		// missing would miss it again: not executed until it arrives.
		if still := r.stillMissing(t); len(still) > 0 {
			res.missing[t.Template.Name()] = still
			for _, d := range t.used {
				if !seen[d.String()] {
					seen[d.String()] = true
					res.used = append(res.used, d)
				}
			}
			continue
		}
		out, err := t.Template.Execute(r.brain)
		if err != nil {
			res.errs = append(res.errs, err)
			r.o.Logger.Error("render failed", "template", t.Template.Name(), "err", err)
			r.o.Metrics.Count("render.errors", 1)
			continue
		}
		for _, d := range out.Used {
			if !seen[d.String()] {
				seen[d.String()] = true
				res.used = append(res.used, d)
			}
		}
		t.used, t.missing = out.Used, out.Missing
		if len(out.Missing) > 0 {
			res.missing[t.Template.Name()] = out.Missing
			continue
		}
		if d := r.hold(t, out.Output, time.Now()); d > 0 {
			if res.wake == 0 || d < res.wake {
				res.wake = d
			}
			continue
		}
		wrote, err := r.write(ctx, t, out.Output)
		if err != nil {
			if !errors.Is(err, ErrCheckFailed) { // a check failure is logged with its output
				r.o.Logger.Error("write failed; the old file stays", "destination", t.Destination, "err", err)
				r.o.Metrics.Count("render.errors", 1)
			}
			res.errs = append(res.errs, err)
			continue
		}
		t.written = out.Output
		if !wrote {
			r.o.Metrics.Count("render.unchanged", 1)
			continue
		}
		r.o.Metrics.Count("render.rendered", 1)
		res.written = append(res.written, t.Destination)
		if t.Command != "" && !slices.Contains(res.commands, t.Command) {
			res.commands = append(res.commands, t.Command)
		}
	}
	for _, c := range res.commands {
		if err := r.command(ctx, c); err != nil {
			res.errs = append(res.errs, err)
		}
	}
	r.o.Metrics.Timing("render.pass", time.Since(begin))
	return res
}

// hold applies t's own quiescence window to a new output: it returns how
// long to wait before the output may be written (0: write it now). The
// window restarts each time the output changes again, and ends at most
// Max after the first change.
func (r *Runner) hold(t *Target, out []byte, now time.Time) time.Duration {
	if r.o.Once || r.o.Dry || t.Wait.Min <= 0 || bytes.Equal(out, t.written) {
		t.pending, t.pendingFirst = nil, time.Time{}
		return 0
	}
	if t.pendingFirst.IsZero() {
		t.pendingFirst = now
	}
	if t.pending == nil || !bytes.Equal(out, t.pending) {
		t.pending, t.pendingLast = out, now
	}
	maxWait := t.Wait.Max
	if maxWait < t.Wait.Min {
		maxWait = 4 * t.Wait.Min
	}
	due := t.pendingLast.Add(t.Wait.Min)
	if hard := t.pendingFirst.Add(maxWait); hard.Before(due) {
		due = hard
	}
	if d := due.Sub(now); d > 0 {
		return d
	}
	t.pending, t.pendingFirst = nil, time.Time{}
	return 0
}

// stillMissing returns the dependencies t's last execution missed that
// have still not been received.
func (r *Runner) stillMissing(t *Target) []Dep {
	var out []Dep
	for _, d := range t.missing {
		if _, ok := r.brain.Recall(d); !ok {
			out = append(out, d)
		}
	}
	return out
}

// write puts out at t's destination when it differs, through -check; it
// reports whether the file was written.
func (r *Runner) write(ctx context.Context, t *Target, out []byte) (bool, error) {
	if r.o.Dry {
		fmt.Fprintf(r.o.Stdout, "> %s\n%s", t.Destination, out)
		return false, nil
	}
	if fi, err := os.Stat(t.Destination); err == nil && fi.IsDir() {
		return false, fmt.Errorf("%s: destination %s is a directory", t.Template.Name(), t.Destination)
	}
	target, err := atomicfile.Resolve(t.Destination, t.File.FollowSymlinks)
	if err != nil {
		return false, fmt.Errorf("%s: %w", t.Template.Name(), err)
	}
	old, err := os.ReadFile(target)
	if err == nil && bytes.Equal(old, out) {
		_, err := atomicfile.Fix(target, t.File)
		return false, err
	}
	st, err := atomicfile.Stage(target, out, t.File)
	if err != nil {
		return false, fmt.Errorf("%s: %w", t.Template.Name(), err)
	}
	defer st.Abort()
	if t.Check != "" {
		cmd := strings.ReplaceAll(t.Check, "{{.Path}}", shellQuote(st.Path()))
		if output, err := runShell(ctx, cmd, t.timeout()); err != nil {
			r.o.Metrics.Count("render.check_failures", 1)
			r.o.Logger.Error("check refused the new file; the old one stays", "destination", t.Destination, "check", cmd, "err", err, "output", string(output))
			return false, fmt.Errorf("%s: %w: %s: %v: %s", t.Destination, ErrCheckFailed, cmd, err, bytes.TrimSpace(output))
		}
	}
	if t.Backup && old != nil {
		if err := atomicfile.Replace(target+".bak", old, t.File); err != nil {
			return false, fmt.Errorf("backup %s: %w", target, err)
		}
	}
	inPlace, err := st.Commit()
	if err != nil {
		return false, fmt.Errorf("%s: %w", t.Template.Name(), err)
	}
	if inPlace {
		r.o.Logger.Warn("rename refused (bind mount?); wrote the file in place, not atomically", "destination", t.Destination)
	}
	r.o.Logger.Info("rendered", "template", t.Template.Name(), "destination", t.Destination, "bytes", len(out))
	return true, nil
}

func (t *Target) timeout() time.Duration {
	if t.Timeout <= 0 {
		return 30 * time.Second
	}
	return t.Timeout
}

func (r *Runner) command(ctx context.Context, c string) error {
	timeout := 30 * time.Second
	for _, t := range r.targets {
		if t.Command == c {
			timeout = t.timeout()
			break
		}
	}
	out, err := runShell(ctx, c, timeout)
	if err != nil {
		r.o.Metrics.Count("render.command_failures", 1)
		r.o.Logger.Error("command failed", "command", c, "err", err, "output", string(out))
		return fmt.Errorf("command %q: %w: %s", c, err, bytes.TrimSpace(out))
	}
	r.o.Logger.Info("command ran", "command", c)
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
