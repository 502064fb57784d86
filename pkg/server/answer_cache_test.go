package server_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// The watchers of a key share one encoded answer per index, and a shared
// answer never reaches a waiter whose index it does not pass: with a writer
// changing the key as fast as it can, every answer each of 16 watchers gets
// is the value written at the index it carries, and that index is past the
// one the watcher asked with (or the same, when its wait ran out).
func TestSharedAnswersFollowTheirIndex(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	mustPut(t, kv, "shared/k", "start")
	var mu sync.Mutex
	written := map[uint64]string{} // ModifyIndex -> value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var index uint64
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var p *consulapi.KVPair
				var meta *consulapi.QueryMeta
				var err error
				if w%2 == 0 { // half of them read the prefix: the same rules for lists
					var ps consulapi.KVPairs
					ps, meta, err = kv.List("shared/", &consulapi.QueryOptions{WaitIndex: index, WaitTime: time.Second})
					if len(ps) == 1 {
						p = ps[0]
					}
				} else {
					p, meta, err = kv.Get("shared/k", &consulapi.QueryOptions{WaitIndex: index, WaitTime: time.Second})
				}
				if err != nil {
					errs <- err
					return
				}
				if p == nil || meta.LastIndex < index || p.ModifyIndex != meta.LastIndex {
					errs <- fmt.Errorf("watcher %d asked past %d and got index %d with %+v", w, index, meta.LastIndex, p)
					return
				}
				mu.Lock()
				want, known := written[p.ModifyIndex]
				mu.Unlock()
				if known && want != string(p.Value) {
					errs <- fmt.Errorf("watcher %d: index %d carries %q, written there: %q", w, p.ModifyIndex, p.Value, want)
					return
				}
				index = meta.LastIndex
			}
		}()
	}
	for i := range 300 {
		v := "v" + strconv.Itoa(i)
		if _, err := kv.Put(&consulapi.KVPair{Key: "shared/k", Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
		p, _, err := kv.Get("shared/k", &consulapi.QueryOptions{WaitIndex: 0})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		written[p.ModifyIndex] = string(p.Value)
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A reap of tombstones takes a prefix's index back to an older value with
// fewer entries than it had at that index: the answer shared at that index
// before the delete must not be served after the reap.
func TestSharedAnswerNotServedAcrossAReap(t *testing.T) {
	srv := servertest.Start(t, func(o *server.Options) { o.TombstoneTTL = 150 * time.Millisecond })
	kv := srv.Client.KV()
	ok, _, _, err := kv.Txn(consulapi.KVTxnOps{
		{Verb: consulapi.KVSet, Key: "reap/a", Value: []byte("1")},
		{Verb: consulapi.KVSet, Key: "reap/b", Value: []byte("2")},
	}, nil)
	if err != nil || !ok {
		t.Fatalf("txn: %v %v", ok, err)
	}
	ps, meta, err := kv.List("reap/", nil)
	if err != nil || len(ps) != 2 {
		t.Fatalf("list = %d entries, %v", len(ps), err)
	}
	both := meta.LastIndex
	if _, err := kv.Delete("reap/b", nil); err != nil {
		t.Fatal(err)
	}
	// Watch the prefix's index through ?keys (another answer in the cache,
	// so the list answered at both's index stays cached) until the reap
	// takes it back to both's index.
	servertest.Eventually(t, "the tombstone reaped", func() bool {
		mustPut(t, kv, "elsewhere", time.Now().String())
		_, m, err := kv.Keys("reap/", "", nil)
		return err == nil && m.LastIndex == both
	})
	ps, meta, err = kv.List("reap/", nil)
	if err != nil || meta.LastIndex != both {
		t.Fatalf("list after the reap: index %d (want %d), %v", meta.LastIndex, both, err)
	}
	if len(ps) != 1 || ps[0].Key != "reap/a" {
		t.Fatalf("list after the reap = %d entries (%v): the answer cached before the delete was served", len(ps), ps)
	}
}
