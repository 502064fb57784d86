package consulwatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/consulwatch"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// recorder is a handler that records what it was given, and fails while
// fail says so.
type recorder struct {
	mu     sync.Mutex
	bodies []string
	calls  int
	fail   func(call int, body string) bool
}

func (r *recorder) Handle(_ context.Context, _ uint64, body []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil && r.fail(r.calls, string(body)) {
		return errors.New("failing on purpose")
	}
	r.bodies = append(r.bodies, string(body))
	return nil
}

func (r *recorder) handled() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

func runOnce(t *testing.T, c *consulapi.Client, params map[string]any, state string, h consulwatch.Handler) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return consulwatch.Run(ctx, c, consulwatch.Config{Params: params, StateFile: state, Once: true, Handler: h})
}

func put(t *testing.T, c *consulapi.Client, k, v string) {
	t.Helper()
	if _, err := c.KV().Put(&consulapi.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRestartedKeyWatchDoesNotRerunForUnchangedKey(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv.Client, "cfg/a", "1")
	state := filepath.Join(t.TempDir(), "state.json")
	params := map[string]any{"type": "key", "key": "cfg/a"}
	r := &recorder{}
	if err := runOnce(t, srv.Client, params, state, r); err != nil {
		t.Fatal(err)
	}
	if err := runOnce(t, srv.Client, params, state, r); err != nil {
		t.Fatal(err)
	}
	if n := len(r.handled()); n != 1 {
		t.Fatalf("handled %d times across a restart with the key unchanged, want 1", n)
	}
	put(t, srv.Client, "cfg/a", "2")
	if err := runOnce(t, srv.Client, params, state, r); err != nil {
		t.Fatal(err)
	}
	got := r.handled()
	var pair consulapi.KVPair
	if len(got) != 2 || json.Unmarshal([]byte(got[1]), &pair) != nil || string(pair.Value) != "2" {
		t.Fatalf("after a change: %q", got)
	}
	// Another watch's state is not taken for this one's.
	if err := runOnce(t, srv.Client, map[string]any{"type": "key", "key": "cfg/b"}, state, r); err != nil {
		t.Fatal(err)
	}
	if n := len(r.handled()); n != 3 {
		t.Fatalf("a watch on another key with the same state file: %d handled, want 3", n)
	}
}

func TestEventsHandledOnceAcrossRestarts(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	fire := func() string {
		id, _, err := c.Event().Fire(&consulapi.UserEvent{Name: "deploy"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := fire()
	state := filepath.Join(t.TempDir(), "state.json")
	params := map[string]any{"type": "event", "name": "deploy"}
	r := &recorder{}
	for range 2 {
		if err := runOnce(t, c, params, state, r); err != nil {
			t.Fatal(err)
		}
	}
	second := fire()
	if err := runOnce(t, c, params, state, r); err != nil {
		t.Fatal(err)
	}
	got := r.handled()
	ids := func(body string) []string {
		var evs []consulapi.UserEvent
		if err := json.Unmarshal([]byte(body), &evs); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	if len(got) != 2 || len(ids(got[0])) != 1 || ids(got[0])[0] != first || len(ids(got[1])) != 1 || ids(got[1])[0] != second {
		t.Fatalf("handled %q; want the first event, then only the second", got)
	}
}

func TestFailingHandlerRetriedThenSucceeds(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv.Client, "cfg/a", "1")
	r := &recorder{fail: func(call int, _ string) bool { return call <= 2 }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- consulwatch.Run(ctx, srv.Client, consulwatch.Config{Params: map[string]any{"type": "key", "key": "cfg/a"},
			Handler: r, MinBackoff: 10 * time.Millisecond})
	}()
	servertest.Eventually(t, "the handler to succeed", func() bool { return len(r.handled()) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r.calls != 3 {
		t.Fatalf("%d calls, want 2 failures and a success", r.calls)
	}
	// With Once, a failure is the result.
	bad := &recorder{fail: func(int, string) bool { return true }}
	if err := runOnce(t, srv.Client, map[string]any{"type": "key", "key": "cfg/a"}, "", bad); !errors.Is(err, consulwatch.ErrHandler) {
		t.Fatalf("once with a failing handler: %v", err)
	}
}

func TestNewerResultSupersedesFailingOne(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv.Client, "cfg/a", "bad")
	// The handler fails on every result whose value is "bad" (YmFk).
	r := &recorder{fail: func(_ int, body string) bool {
		var p consulapi.KVPair
		return json.Unmarshal([]byte(body), &p) == nil && string(p.Value) == "bad"
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- consulwatch.Run(ctx, srv.Client, consulwatch.Config{Params: map[string]any{"type": "key", "key": "cfg/a"},
			Handler: r, MinBackoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	}()
	servertest.Eventually(t, "a failed attempt", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.calls >= 1 })
	put(t, srv.Client, "cfg/a", "good")
	servertest.Eventually(t, "the newer result handled", func() bool { return len(r.handled()) == 1 })
	cancel()
	<-done
}

func TestBadParamsRefused(t *testing.T) {
	for _, p := range []map[string]any{
		{"type": "nope"}, {"type": "key"}, {"type": "key", "key": "a", "service": "x"},
	} {
		if err := consulwatch.Validate(p); err == nil {
			t.Errorf("%v accepted", p)
		}
	}
}
