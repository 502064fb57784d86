package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// With -dev the Raft log is in memory and only a snapshot truncates it: after
// a burst of writes several times the snapshot threshold, the log must come
// down to at most one threshold plus the trailing entries, instead of
// keeping every write (hashicorp/raft's defaults check every 120-240 s).
func TestDevRaftLogIsTruncatedUnderWrites(t *testing.T) {
	srv, err := New(Options{Dev: true, NodeName: "devlog", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	const writes, writers = 5 * devSnapshotThreshold, 32
	value := make([]byte, 128)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < writes; i += writers {
				op := state.Op{Verb: state.VerbSet, Key: fmt.Sprintf("devlog/%04d", i%1000), Value: value}
				if _, err := srv.apply(encodeKV(&op)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	bound := uint64(devSnapshotThreshold + devTrailingLogs)
	var first, last uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		first, _ = srv.logs.FirstIndex()
		last, _ = srv.logs.LastIndex()
		if last >= writes && last-first+1 <= bound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d writes the in-memory raft log holds entries %d..%d (%d), want at most %d",
				writes, first, last, last-first+1, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("after %d writes the log holds %d..%d", writes, first, last)
}
