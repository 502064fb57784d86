package server

import (
	"context"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// waitWatch wakes on any channel of a small set or a large one, and not
// on a channel outside it; the timer and the request's end stop it.
func TestWaitWatch(t *testing.T) {
	for _, size := range []int{1, 5, 6, 40} {
		chs := make([]chan struct{}, size)
		ws := memdb.NewWatchSet()
		for i := range chs {
			chs[i] = make(chan struct{})
			ws.Add(chs[i])
		}
		close(chs[size-1])
		if !waitWatch(ws, context.Background(), nil) {
			t.Fatalf("%d channels, the last closed: not woken", size)
		}
		// None fires: the timer ends the wait.
		ws = memdb.NewWatchSet()
		for range size {
			ws.Add(make(chan struct{}))
		}
		timer := make(chan time.Time, 1)
		timer <- time.Now()
		if waitWatch(ws, context.Background(), timer) {
			t.Fatalf("%d channels, none closed: woken", size)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if waitWatch(ws, ctx, nil) {
			t.Fatalf("%d channels, the request gone: woken", size)
		}
	}
}
