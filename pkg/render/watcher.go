package render

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvxproject/kvx/pkg/watch"
)

// Brain holds the latest value of every dependency fetched at least once.
// A dependency not in it has not been received yet.
type Brain struct {
	mu   sync.RWMutex
	data map[string]any
}

// NewBrain returns an empty Brain.
func NewBrain() *Brain { return &Brain{data: map[string]any{}} }

// Remember stores d's value; it reports whether the value changed.
func (b *Brain) Remember(d Dep, v any) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.data[d.String()]
	b.data[d.String()] = v
	return !ok || !reflect.DeepEqual(old, v)
}

// Recall returns d's value and whether it has been received.
func (b *Brain) Recall(d Dep) (any, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	v, ok := b.data[d.String()]
	return v, ok
}

// Forget drops d.
func (b *Brain) Forget(d Dep) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.data, d.String())
}

// WatchOptions tune a Watcher. Zero values get the defaults shown.
type WatchOptions struct {
	MaxConnections int           // blocking queries in flight at once; default 32
	Wait           time.Duration // longest blocking query; default 5m
	SharedWait     time.Duration // longest block when dependencies outnumber connections; default 2s
	MaxStale       time.Duration // stale reads allowed up to this lag, else redone consistently; 0: never stale
	Logger         *slog.Logger
}

// Watcher keeps one query loop per unique dependency, each a blocking
// query over a pool of at most MaxConnections in flight, and records every
// answer in a Brain. When dependencies outnumber the pool, each query
// blocks at most SharedWait before giving its connection to the next.
type Watcher struct {
	src   Source
	opts  WatchOptions
	brain *Brain
	sem   chan struct{}

	changed chan struct{} // a value changed (capacity 1: coalesced)
	errs    chan error    // a fetch failed (latest per dependency logged)

	mu     sync.Mutex
	loops  map[string]*depLoop
	absent map[string]bool // key() dependencies whose latest answer was "no such key"
	wg     sync.WaitGroup

	inFlight, peak atomic.Int64
	queries        atomic.Int64
	mostDeps       int // most dependencies watched at once (under mu)

	// unfetched counts loops whose first fetch has not completed; while
	// any is, blocking queries wait, so first fetches get the connections
	// (under mu; fetched is closed when it drops to 0).
	unfetched int
	fetched   chan struct{}
}

type depLoop struct {
	dep    Dep
	cancel context.CancelFunc
}

// NewWatcher returns a Watcher that fetches from src into brain.
func NewWatcher(src Source, brain *Brain, o WatchOptions) *Watcher {
	if o.MaxConnections <= 0 {
		o.MaxConnections = 32
	}
	if o.Wait <= 0 {
		o.Wait = 5 * time.Minute
	}
	if o.SharedWait <= 0 {
		o.SharedWait = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		src: src, opts: o, brain: brain,
		sem:     make(chan struct{}, o.MaxConnections),
		changed: make(chan struct{}, 1),
		errs:    make(chan error, 16),
		loops:   map[string]*depLoop{},
		absent:  map[string]bool{},
	}
}

// Absent reports whether d was fetched and found not to exist (a key()
// whose key is missing): a lookup that failed, not one still in flight.
func (w *Watcher) Absent(d Dep) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.absent[d.String()]
}

// setAbsent records whether d's latest answer was "no such key"; the first
// such answer counts as a change, so a runner that fails on failed lookups
// sees it.
func (w *Watcher) setAbsent(d Dep, absent bool) {
	w.mu.Lock()
	was := w.absent[d.String()]
	if absent {
		w.absent[d.String()] = true
	} else {
		delete(w.absent, d.String())
	}
	w.mu.Unlock()
	if absent && !was {
		w.notify()
	}
}

// Changed receives when any dependency's value changed.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Errors receives fetch errors (dropped when nobody reads them in time).
func (w *Watcher) Errors() <-chan error { return w.errs }

// Stats are the watcher's counters.
type Stats struct {
	Dependencies int   // unique dependencies watched (the most at once)
	Queries      int64 // fetches made
	PeakInFlight int64 // most queries in flight at once (connections held)
}

// Stats returns the current counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	n := w.mostDeps
	w.mu.Unlock()
	return Stats{Dependencies: n, Queries: w.queries.Load(), PeakInFlight: w.peak.Load()}
}

// Watch makes the set of watched dependencies exactly deps: loops start for
// new ones and stop for those no longer needed (their values forgotten).
func (w *Watcher) Watch(ctx context.Context, deps []Dep) {
	want := map[string]Dep{}
	for _, d := range deps {
		want[d.String()] = d
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, l := range w.loops {
		if _, ok := want[id]; !ok {
			l.cancel()
			delete(w.loops, id)
			delete(w.absent, id)
			w.brain.Forget(l.dep)
		}
	}
	for id, d := range want {
		if _, ok := w.loops[id]; ok {
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		w.loops[id] = &depLoop{dep: d, cancel: cancel}
		if w.unfetched == 0 {
			w.fetched = make(chan struct{})
		}
		w.unfetched++
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(lctx, d)
		}()
	}
	w.mostDeps = max(w.mostDeps, len(w.loops))
}

// Stop ends every loop and waits for them.
func (w *Watcher) Stop() {
	w.mu.Lock()
	for id, l := range w.loops {
		l.cancel()
		delete(w.loops, id)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// firstFetched marks one loop's first fetch done (or abandoned).
func (w *Watcher) firstFetched() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.unfetched--; w.unfetched == 0 {
		close(w.fetched)
	}
}

// Settled returns once no dependency awaits its first answer, or after at
// most limit (a dependency whose fetches keep failing must not hold back
// the others' renders): a runner woken by the first answers waits for the
// rest, so that a start-up renders every template in one pass and runs
// their commands once.
func (w *Watcher) Settled(ctx context.Context, limit time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	_ = w.awaitFirstFetches(ctx)
}

// awaitFirstFetches returns once no loop awaits its first fetch.
func (w *Watcher) awaitFirstFetches(ctx context.Context) error {
	w.mu.Lock()
	ch := w.fetched
	n := w.unfetched
	w.mu.Unlock()
	if n == 0 {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Watcher) oversubscribed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.loops) > w.opts.MaxConnections
}

func (w *Watcher) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// errLeaderless is a handler's refusal of an empty answer from a server
// that knows no leader: the query is redone rather than rendered.
var errLeaderless = errors.New("empty answer from a server without a leader; asking again")

func (w *Watcher) run(ctx context.Context, d Dep) {
	if d.Kind == KindFile {
		w.runFile(ctx, d)
		return
	}
	log := w.opts.Logger.With("dependency", d.String())
	first := true
	defer func() {
		if first {
			w.firstFetched()
		}
	}()
	query := func(ctx context.Context, index uint64, wait time.Duration) (Fetched, uint64, error) {
		if !first && index > 0 {
			if err := w.awaitFirstFetches(ctx); err != nil {
				return Fetched{}, 0, err
			}
		}
		if w.oversubscribed() {
			wait = min(wait, w.opts.SharedWait)
		}
		select {
		case w.sem <- struct{}{}:
		case <-ctx.Done():
			return Fetched{}, 0, ctx.Err()
		}
		defer func() { <-w.sem }()
		now := w.inFlight.Add(1)
		defer w.inFlight.Add(-1)
		for p := w.peak.Load(); now > p && !w.peak.CompareAndSwap(p, now); p = w.peak.Load() {
		}
		w.queries.Add(1)
		o := QueryOptions{Index: index, Wait: wait, AllowStale: w.opts.MaxStale > 0}
		f, err := w.src.Fetch(ctx, d, o)
		if err == nil && o.AllowStale && f.LastContact > w.opts.MaxStale {
			log.Debug("stale answer past max-stale; reading consistently", "last_contact", f.LastContact)
			o.AllowStale = false
			w.queries.Add(1)
			f, err = w.src.Fetch(ctx, d, o)
		}
		if err != nil {
			w.report(err)
		}
		return f, f.Index, err
	}
	handle := func(_ context.Context, f Fetched, _ bool) error {
		if first { // counted once the answer is in the brain (or known absent)
			defer func() {
				first = false
				w.firstFetched()
			}()
		}
		if d.Kind == KindKeyBlock {
			w.setAbsent(d, f.Value == nil)
			if f.Value == nil {
				return nil // key(): not answered until the key exists
			}
		}
		if !f.KnownLeader && empty(f.Value) {
			if old, ok := w.brain.Recall(d); ok && !empty(old) {
				return errLeaderless
			}
		}
		if w.brain.Remember(d, f.Value) {
			w.notify()
		}
		return nil
	}
	_ = watch.Run(ctx, watch.Options{Wait: w.opts.Wait, MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, Logger: log}, query, handle)
}

func (w *Watcher) report(err error) {
	select {
	case w.errs <- err:
	default:
	}
}

// runFile reads a local file, then again each time it changes.
func (w *Watcher) runFile(ctx context.Context, d Dep) {
	w.firstFetched() // a local read needs no connection
	err := watch.File(ctx, d.Path, func() error {
		f, err := w.src.Fetch(ctx, d, QueryOptions{})
		if err != nil {
			w.report(err)
			return err
		}
		if w.brain.Remember(d, f.Value) {
			w.notify()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		w.report(fmt.Errorf("%s: %w", d, err))
	}
}

func empty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map:
		return rv.Len() == 0
	case reflect.Pointer:
		return rv.IsNil()
	}
	return false
}
