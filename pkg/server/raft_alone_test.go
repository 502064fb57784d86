package server_test

import (
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// A server that is its configuration's only voter stands for election at
// once, on its first start and on a restart from its data dir: with Raft
// timers of ten minutes, the follower's own timer could not have elected it
// within waitLeader's 30 seconds.
func TestOnlyVoterStandsAtOnce(t *testing.T) {
	const slow = 10 * time.Minute
	t.Run("dev", func(t *testing.T) {
		srv, c := startNode(t, server.Options{NodeName: "alone-dev", Dev: true, HeartbeatTimeout: slow})
		waitLeader(t, srv)
		mustPut(t, c.KV(), "k", "dev")
	})
	t.Run("durable, then restarted", func(t *testing.T) {
		dir := t.TempDir()
		raftAddr, httpAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
		opts := server.Options{NodeName: "alone", DataDir: dir, RaftAddr: raftAddr, HTTPAddr: httpAddr, HeartbeatTimeout: slow}
		srv, c := startNode(t, opts)
		waitLeader(t, srv)
		mustPut(t, c.KV(), "k", "first")
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		srv, c = startNode(t, opts)
		waitLeader(t, srv)
		if !srv.IsLeader() {
			t.Fatal("the restarted server knows a leader but is not it")
		}
		p, _, err := c.KV().Get("k", nil)
		if err != nil || p == nil || string(p.Value) != "first" {
			t.Fatalf("after the restart k = %+v, %v; want first", p, err)
		}
		mustPut(t, c.KV(), "k", "second")
	})
}
