package server

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestEffectiveWait(t *testing.T) {
	tests := []struct {
		asked, base time.Duration
	}{
		{0, 5 * time.Minute}, // default
		{300 * time.Millisecond, 300 * time.Millisecond},
		{10 * time.Minute, 10 * time.Minute},
		{time.Hour, 10 * time.Minute}, // capped
	}
	for _, tc := range tests {
		var sawJitter bool
		for i := 0; i < 200; i++ {
			got := effectiveWait(tc.asked)
			if got < tc.base || got > tc.base+tc.base/16 {
				t.Fatalf("effectiveWait(%s) = %s, want within [%s, %s]", tc.asked, got, tc.base, tc.base+tc.base/16)
			}
			sawJitter = sawJitter || got != tc.base
		}
		if !sawJitter {
			t.Errorf("effectiveWait(%s) never added jitter in 200 tries", tc.asked)
		}
	}
}

// neverFuture is a Raft future nobody answers: what a shut-down raft
// leaves behind for a future queued in its buffered apply channel.
type neverFuture struct{}

func (neverFuture) Error() error { select {} }

// TestAwaitEndsWhenRaftIsDown: a wait on a Raft future that will never be
// answered ends once Raft has shut down, so Close cannot hang on it.
func TestAwaitEndsWhenRaftIsDown(t *testing.T) {
	s := &Server{raftDown: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- s.await(neverFuture{}) }()
	select {
	case err := <-done:
		t.Fatalf("await returned %v before raft was down", err)
	default:
	}
	close(s.raftDown)
	select {
	case err := <-done:
		if !errors.Is(err, raft.ErrRaftShutdown) {
			t.Fatalf("await = %v, want ErrRaftShutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("await still blocked after raft shut down")
	}
}
