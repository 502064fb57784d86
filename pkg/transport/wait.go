package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/watch"
)

// ErrSuperseded means another push replaced the version being waited for:
// the nodes will get that one instead.
var ErrSuperseded = errors.New("superseded by another push")

// ErrWaitTimeout means the nodes did not reach the goal in time.
var ErrWaitTimeout = errors.New("timed out")

// WaitOptions say what Wait waits for.
type WaitOptions struct {
	Key string
	// Want is how many nodes must have the current version; 0 means every
	// node that acknowledges the key (at least one).
	Want int
	// Checksum, if set, is the version waited for (the one a push just
	// wrote): another push landing meanwhile ends the wait with
	// ErrSuperseded. "" follows whatever version is current.
	Checksum string
	// Timeout ends the wait with ErrWaitTimeout; 0 waits until ctx is done.
	Timeout time.Duration
	// MinInterval is the least time between two reads of the status, so a
	// fleet's burst of acknowledgements costs a few reads, not one each;
	// default 250ms.
	MinInterval time.Duration
	// Progress, if not nil, is called with the first status read and with
	// every one after it that differs in anything but durations.
	Progress func(Status)
	Logger   *slog.Logger // default: the Client's
}

// Wait blocks until o.Want nodes have the current version of o.Key and
// returns the status that showed it. It does not poll: it holds a blocking
// query on the key's folder (whose index moves with every push, stop and
// acknowledgement), reads the status when it moves, and re-reads at least
// every 30s so freezes (kept outside the key's folder) show up. Errors
// reading are retried with backoff until the timeout.
//
// It fails at once when the key has no checksum (ErrNoKey) or, with
// o.Checksum, when another push replaced it (ErrSuperseded). On timeout it
// reads the status once more, so the laggards it returns with
// ErrWaitTimeout are those of the deadline; when ctx is done it returns the
// last status read with ctx's error. Either way the Status is the last one
// read (zero if none was).
func (c *Client) Wait(ctx context.Context, o WaitOptions) (Status, error) {
	l, err := c.layout(o.Key)
	if err != nil {
		return Status{}, err
	}
	start := time.Now()
	minInterval := o.MinInterval
	if minInterval <= 0 {
		minInterval = 250 * time.Millisecond
	}
	logger := o.Logger
	if logger == nil {
		logger = c.log()
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.Timeout > 0 {
		wctx, cancel = context.WithTimeout(wctx, o.Timeout)
		defer cancel()
	}
	var (
		last     Status
		read     bool   // last holds a status
		lastErr  error  // the last read's error, when it failed
		final    error  // ends the wait: reached (nil with done) or hopeless
		done     bool   // final is set
		shown    string // the signature last passed to Progress
		lastRead time.Time
	)
	stop := func(err error) { final, done = err, true; cancel() }
	query := func(ctx context.Context, index uint64, wait time.Duration) (struct{}, uint64, error) {
		if index != 0 {
			if d := time.Until(lastRead.Add(minInterval)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return struct{}{}, 0, ctx.Err()
				case <-t.C:
				}
			}
		}
		// The key's folder with a separator: an answer of a few names,
		// whose index is the whole folder's.
		_, meta, err := c.KV.Keys(l.base(), "/", (&consulapi.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
		if err != nil {
			err = fmt.Errorf("watch %s: %w", l.base(), err)
			if ctx.Err() == nil {
				lastErr = err
			}
			return struct{}{}, 0, err
		}
		return struct{}{}, meta.LastIndex, nil
	}
	handle := func(ctx context.Context, _ struct{}, _ bool) error {
		st, err := c.Status(ctx, o.Key)
		lastRead = time.Now()
		if err != nil && !errors.Is(err, ErrNoKey) {
			lastErr = err
			return err // retried with backoff
		}
		last, read, lastErr = st, true, nil
		if sig := signature(st); sig != shown {
			shown = sig
			if o.Progress != nil {
				o.Progress(st)
			}
		}
		switch {
		case err != nil:
			stop(err)
		case o.Checksum != "" && st.Checksum != o.Checksum:
			stop(fmt.Errorf("%s/%s: waiting for %s: %w (now %s)", l.Prefix, l.Key, abbreviate(o.Checksum), ErrSuperseded, st.Checksum))
		case st.Reached(o.Want):
			stop(nil)
		}
		return nil
	}
	err = watch.Run(wctx, watch.Options{Reconcile: 30 * time.Second, MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, Logger: logger}, query, handle)
	switch {
	case done:
		return last, final
	case ctx.Err() != nil:
		return last, fmt.Errorf("%s/%s: wait ended after %v: %w", l.Prefix, l.Key, time.Since(start).Round(time.Millisecond), ctx.Err())
	case !errors.Is(err, context.DeadlineExceeded):
		return last, err
	}
	// Timed out: one more read, so the report is the deadline's picture.
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if st, err := c.Status(rctx, o.Key); err == nil || errors.Is(err, ErrNoKey) {
		last, read, lastErr = st, true, nil
		if err == nil && st.Reached(o.Want) && (o.Checksum == "" || st.Checksum == o.Checksum) {
			return st, nil
		}
	} else {
		lastErr = err
	}
	msg := fmt.Sprintf("%s/%s: %v after %v", l.Prefix, l.Key, ErrWaitTimeout, o.Timeout)
	if read {
		msg = fmt.Sprintf("%s/%s: %d/%d nodes have %s after %v, want %s", l.Prefix, l.Key, last.Current, last.Nodes, abbreviate(last.Checksum), o.Timeout, WantString(o.Want))
		if len(last.Behind) > 0 {
			msg += fmt.Sprintf("; %d behind: %s", len(last.Behind), last.BehindList(10))
		}
	}
	if lastErr != nil {
		msg += "; the last read failed: " + lastErr.Error()
	}
	return last, fmt.Errorf("%s: %w", msg, ErrWaitTimeout)
}

// WantString names a Want: "all" for 0, else the number.
func WantString(want int) string {
	if want <= 0 {
		return "all"
	}
	return fmt.Sprint(want)
}

// signature is what a progress report shows of a status: it changes when
// the version, the counts, the stop switch, a freeze or a laggard's state
// do, not when durations grow.
func signature(st Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d/%d stop=%q", st.Checksum, st.Current, st.Nodes, st.Stop)
	for _, f := range st.Frozen {
		fmt.Fprintf(&b, " frozen=%s:%q", f.Node, f.Reason)
	}
	for _, a := range st.Behind {
		fmt.Fprintf(&b, " %s:%s:%s:%s:%q", a.Node, a.Result, a.Code, a.Checksum, a.Frozen)
	}
	return b.String()
}

// BehindList names the laggards, up to max of them, each with what holds
// it back when that is more than an older version: "web-3 (frozen),
// web-7 (error), web-9 and 4 more".
func (st Status) BehindList(max int) string {
	if max < 1 {
		max = 1
	}
	var parts []string
	for i, a := range st.Behind {
		if i == max {
			parts[len(parts)-1] += fmt.Sprintf(" and %d more", len(st.Behind)-max)
			break
		}
		parts = append(parts, a.Node+a.hold())
	}
	return strings.Join(parts, ", ")
}

// hold says in a word what keeps a laggard back, "" for an older version.
func (a Laggard) hold() string {
	switch {
	case a.Frozen != "" || a.Code == RefusedFrozen:
		return " (frozen)"
	case a.Result == ResultRefused && a.Code != "":
		return " (" + a.Code + ")"
	case a.Result == ResultRefused, a.Result == ResultError, a.Result == ResultCommandFailed:
		return " (" + a.Result + ")"
	}
	return ""
}
