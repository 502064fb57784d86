package checks

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

const deadline = 10 * time.Second // generous: only a failing test waits this long

// recorder collects every Notify call and wakes waiters on each.
type recorder struct {
	mu    sync.Mutex
	calls map[string][]State
	wake  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{calls: map[string][]State{}, wake: make(chan struct{})}
}

func (r *recorder) notify(s State) {
	r.mu.Lock()
	r.calls[s.CheckID] = append(r.calls[s.CheckID], s)
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) of(id string) []State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]State(nil), r.calls[id]...)
}

// waitFor waits until the last state notified for id satisfies ok.
func (r *recorder) waitFor(t *testing.T, id string, what string, ok func(State) bool) State {
	t.Helper()
	timeout := time.After(deadline)
	for {
		r.mu.Lock()
		calls, wake := r.calls[id], r.wake
		r.mu.Unlock()
		if len(calls) > 0 && ok(calls[len(calls)-1]) {
			return calls[len(calls)-1]
		}
		select {
		case <-wake:
		case <-timeout:
			t.Fatalf("check %s: no %s within %s; notified: %+v", id, what, deadline, calls)
		}
	}
}

func (r *recorder) waitStatus(t *testing.T, id, status string) State {
	t.Helper()
	return r.waitFor(t, id, status, func(s State) bool { return s.Status == status })
}

// start runs a Manager with defs until the test ends.
func start(t *testing.T, defs ...config.Check) (*Manager, *recorder) {
	t.Helper()
	rec := newRecorder()
	m := New(Options{Notify: rec.notify, MinInterval: time.Millisecond})
	if err := m.Replace(defs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(runManager(t, m))
	return m, rec
}

// runManager runs m until the returned stop is called; stop cancels Run
// and fails the test unless Run returns context.Canceled soon after.
func runManager(t *testing.T, m *Manager) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run returned %v, want context.Canceled", err)
				}
			case <-time.After(deadline):
				t.Errorf("Run did not return within %s of cancel: a check goroutine is stuck", deadline)
			}
		})
	}
}

// waitUntil polls cond (cheap, local) until it holds, yielding between tries.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("not %s within %s", what, deadline)
		}
		time.Sleep(time.Millisecond) // polling step, not a timed assertion
	}
}
