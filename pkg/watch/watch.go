package watch

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Options tune a Run. Zero values get the defaults shown.
type Options struct {
	Wait       time.Duration // longest blocking query; default 5m
	Reconcile  time.Duration // call the handler at least this often; 0: only on changes
	MinBackoff time.Duration // first retry delay after an error; default 250ms
	MaxBackoff time.Duration // retry delay cap; default 30s
	Logger     *slog.Logger  // default: discard
}

// Query runs one blocking query: it returns once the server's index differs
// from index (at once when index is 0) or wait has passed, with the result
// and the index it was read at.
type Query[T any] func(ctx context.Context, index uint64, wait time.Duration) (T, uint64, error)

// Handler acts on a result. reconcile is true when it is called because the
// reconcile interval passed rather than because the index moved. An error
// makes Run retry (a fresh query, then the handler) after a backoff.
type Handler[T any] func(ctx context.Context, v T, reconcile bool) error

func (o *Options) defaults() {
	if o.Wait <= 0 {
		o.Wait = 5 * time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Run queries and handles until ctx is done, then returns ctx's error. It
// never gives up on errors: a server that is down, restarting or electing a
// leader is retried with jittered exponential backoff.
func Run[T any](ctx context.Context, o Options, q Query[T], h Handler[T]) error {
	o.defaults()
	var (
		index     uint64
		pending   = true // the handler has not yet seen the current state
		failures  int
		reconcile = time.Now().Add(o.Reconcile)
	)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := o.Wait
		if o.Reconcile > 0 {
			wait = min(wait, max(time.Until(reconcile), time.Millisecond))
		}
		at := index
		if pending {
			at = 0 // answer at once
		}
		// A server applies up to wait/16 of jitter; a dead connection must
		// not hold the loop beyond that.
		qctx, cancel := context.WithTimeout(ctx, wait+wait/16+10*time.Second)
		v, idx, err := q(qctx, at, wait)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			d := backoff(o, failures)
			o.Logger.Warn("watch query failed", "err", err, "retry_in", d.Round(time.Millisecond))
			if !sleep(ctx, d) {
				return ctx.Err()
			}
			continue
		}
		if idx == 0 {
			idx = 1 // Consul: an index of 0 must be treated as 1
		}
		changed := pending || idx != index
		if idx < index {
			o.Logger.Info("server index went backwards; starting over", "was", index, "now", idx)
		}
		index = idx
		due := o.Reconcile > 0 && !time.Now().Before(reconcile)
		if !changed && !due {
			failures = 0
			continue
		}
		if due {
			reconcile = time.Now().Add(o.Reconcile)
		}
		if err := h(ctx, v, !changed); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			pending = true
			failures++
			d := backoff(o, failures)
			o.Logger.Warn("watch handler failed", "err", err, "retry_in", d.Round(time.Millisecond))
			if !sleep(ctx, d) {
				return ctx.Err()
			}
			continue
		}
		pending, failures = false, 0
	}
}

// backoff is MinBackoff doubled per failure up to MaxBackoff, with the
// lower half jittered so a fleet that lost its server does not come back in
// step.
func backoff(o Options, failures int) time.Duration {
	d := o.MinBackoff
	for i := 1; i < failures && d < o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, o.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
