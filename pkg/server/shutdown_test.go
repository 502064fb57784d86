package server_test

import (
	"fmt"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// TestCloseAnswersBlockingQueries: a server that stops answers its
// blocking queries at once with the unchanged index, so a stop does not
// wait for them (it used to spin until the 5 s shutdown deadline, then cut
// the connections without an answer).
func TestCloseAnswersBlockingQueries(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	if _, err := kv.Put(&consulapi.KVPair{Key: "w", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	_, meta, err := kv.Get("w", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	type answer struct {
		index uint64
		err   error
	}
	answers := make(chan answer, n)
	for range n {
		go func() {
			_, m, err := kv.Get("w", &consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 5 * time.Minute})
			if err != nil {
				answers <- answer{err: err}
				return
			}
			answers <- answer{index: m.LastIndex}
		}()
	}
	servertest.Eventually(t, "the queries blocking", func() bool {
		self, err := srv.Client.Agent().Self()
		return err == nil && fmt.Sprint(self["Stats"]["raft"].(map[string]any)["blocking_queries"]) == fmt.Sprint(n)
	})
	if err := srv.Server.Close(); err != nil {
		t.Fatal(err)
	}
	for range n {
		a := <-answers
		if a.err != nil || a.index != meta.LastIndex {
			t.Errorf("blocking query at shutdown: index %d, %v; want the unchanged answer %d", a.index, a.err, meta.LastIndex)
		}
	}
}
