package watch_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
	"github.com/kvxproject/kvx/pkg/watch"
)

type call struct {
	value     string
	reconcile bool
}

// run watches key on srv in the background and records every handler call.
func run(t *testing.T, srv *servertest.Server, key string, o watch.Options, fail func(n int) error) (get func() []call, stop func() error) {
	t.Helper()
	var (
		mu    sync.Mutex
		calls []call
	)
	query := func(ctx context.Context, index uint64, wait time.Duration) (string, uint64, error) {
		q := (&consulapi.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
		p, meta, err := srv.Client.KV().Get(key, q)
		if err != nil {
			return "", 0, err
		}
		if p == nil {
			return "", meta.LastIndex, nil
		}
		return string(p.Value), meta.LastIndex, nil
	}
	handler := func(ctx context.Context, v string, reconcile bool) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{v, reconcile})
		if fail != nil {
			return fail(len(calls))
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watch.Run(ctx, o, query, handler) }()
	get = func() []call {
		mu.Lock()
		defer mu.Unlock()
		return append([]call(nil), calls...)
	}
	stop = func() error { cancel(); return <-done }
	t.Cleanup(func() { cancel() })
	return get, stop
}

func put(t *testing.T, srv *servertest.Server, key, value string) {
	t.Helper()
	if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRunWakesOnChangeOnly(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv, "w/key", "v1")
	get, stop := run(t, srv, "w/key", watch.Options{}, nil)
	servertest.Eventually(t, "first call", func() bool { return len(get()) == 1 })
	put(t, srv, "w/other", "x") // another key: must not wake the watch
	put(t, srv, "w/key", "v2")
	servertest.Eventually(t, "call after change", func() bool { return len(get()) == 2 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	want := []call{{"v1", false}, {"v2", false}}
	if got := get(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("calls = %+v, want %+v", got, want)
	}
}

func TestRunReconciles(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv, "w/key", "v1")
	get, stop := run(t, srv, "w/key", watch.Options{Reconcile: 50 * time.Millisecond}, nil)
	servertest.Eventually(t, "reconcile calls", func() bool { return len(get()) >= 3 })
	stop()
	calls := get()
	if calls[0].reconcile {
		t.Errorf("first call marked reconcile")
	}
	for _, c := range calls[1:] {
		if !c.reconcile || c.value != "v1" {
			t.Errorf("call %+v: want a reconcile of v1", c)
		}
	}
}

func TestRunRetriesFailedHandler(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv, "w/key", "v1")
	fail := func(n int) error {
		if n <= 2 {
			return errors.New("disk full")
		}
		return nil
	}
	get, stop := run(t, srv, "w/key", watch.Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, fail)
	servertest.Eventually(t, "third call", func() bool { return len(get()) == 3 })
	put(t, srv, "w/key", "v2")
	servertest.Eventually(t, "call after change", func() bool { return len(get()) == 4 })
	stop()
	calls := get()
	for i, want := range []string{"v1", "v1", "v1", "v2"} {
		if calls[i].value != want || calls[i].reconcile {
			t.Errorf("call %d = %+v, want %s (not a reconcile)", i, calls[i], want)
		}
	}
}

func TestRunSurvivesServerRestart(t *testing.T) {
	addr := servertest.FreeAddr(t)
	raftAddr := servertest.FreeAddr(t)
	dir := t.TempDir()
	start := func() *servertest.Server {
		return servertest.Start(t, func(o *server.Options) {
			o.Dev, o.DataDir, o.HTTPAddr, o.RaftAddr = false, dir, addr, raftAddr
		})
	}
	srv := start()
	put(t, srv, "w/key", "v1")
	get, stop := run(t, srv, "w/key", watch.Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, nil)
	servertest.Eventually(t, "first call", func() bool { return len(get()) == 1 })
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv2 := start() // same address and data: the watch must carry on by itself
	put(t, srv2, "w/key", "v2")
	servertest.Eventually(t, "call after restart", func() bool {
		c := get()
		return len(c) > 0 && c[len(c)-1].value == "v2"
	})
	stop()
}
