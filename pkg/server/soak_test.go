package server_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// soakNode is one restartable node of the soak cluster.
type soakNode struct {
	mu   sync.Mutex
	opts server.Options
	srv  *server.Server
	c    *consulapi.Client
}

func (n *soakNode) start(t *testing.T) {
	srv, err := server.New(n.opts)
	if err != nil {
		t.Errorf("start %s: %v", n.opts.NodeName, err)
		return
	}
	c, err := client.New(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		t.Error(err)
		return
	}
	n.mu.Lock()
	n.srv, n.c = srv, c
	n.mu.Unlock()
}

func (n *soakNode) stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv, n.c = nil, nil
	n.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (n *soakNode) client() *consulapi.Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.c
}

// TestSoakRestartsKeepReplicasIdentical runs writers and blocking watchers
// against a three-node durable cluster while nodes are stopped and restarted
// from their data dirs, one at a time, over and over. Then every replica
// must hold exactly the same state (values and indexes), no acknowledged write
// may be lost, and no default-consistency blocking query may have seen its
// index go backwards. KVX_SOAK sets the length (default 15s).
func TestSoakRestartsKeepReplicasIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped under -short")
	}
	length := 15 * time.Second
	if v := os.Getenv("KVX_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("KVX_SOAK=%q: %v", v, err)
		}
		length = d
	}
	nodes := make([]*soakNode, 3)
	for i := range nodes {
		nodes[i] = &soakNode{opts: server.Options{
			NodeName: fmt.Sprintf("soak%d", i+1), DataDir: t.TempDir(),
			HTTPAddr: "127.0.0.1:0", RaftAddr: servertest.FreeAddr(t),
			BootstrapExpect: 3, HeartbeatTimeout: 300 * time.Millisecond,
			SnapshotThreshold: 200, SnapshotInterval: 200 * time.Millisecond, TrailingLogs: 50,
		}}
		if i > 0 {
			nodes[i].opts.Join = []string{nodes[0].opts.RaftAddr}
		}
	}
	for _, n := range nodes {
		n.start(t)
		defer n.stop()
	}
	if t.Failed() {
		t.FailNow()
	}
	anyClient := func() *consulapi.Client {
		for {
			if c := nodes[rand.N(len(nodes))].client(); c != nil {
				return c
			}
		}
	}
	servertest.Eventually(t, "a leader", func() bool {
		l, err := nodes[0].client().Status().Leader()
		return err == nil && l != ""
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	const writers, keysPerWriter = 4, 25
	type progress struct{ acked, tried [keysPerWriter]int64 }
	prog := make([]progress, writers)
	var ackedTotal atomic.Int64
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := int64(1); ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				k := int(n % keysPerWriter)
				prog[w].tried[k] = n
				_, err := anyClient().KV().Put(&consulapi.KVPair{Key: fmt.Sprintf("soak/w%d/k%02d", w, k), Value: []byte(strconv.FormatInt(n, 10))}, nil)
				if err == nil {
					prog[w].acked[k] = n
					ackedTotal.Add(1)
				}
			}
		}()
	}
	// Deletes and transactions alongside: a txn always sets soak/t/a and
	// soak/t/b to the same value, so any replica showing them different
	// would have applied half a transaction.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			kv := anyClient().KV()
			key := fmt.Sprintf("soak/d/k%d", n%10)
			switch n % 3 {
			case 0:
				kv.Put(&consulapi.KVPair{Key: key, Value: []byte("x")}, nil)
			case 1:
				kv.Delete(key, nil)
			case 2:
				v := []byte(strconv.Itoa(n))
				anyClient().Txn().Txn(consulapi.TxnOps{
					{KV: &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: "soak/t/a", Value: v}},
					{KV: &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: "soak/t/b", Value: v}},
				}, nil)
			}
		}
	}()
	var backwards atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, meta, err := anyClient().KV().List("soak/", &consulapi.QueryOptions{WaitIndex: last, WaitTime: 500 * time.Millisecond})
				if err != nil {
					continue
				}
				if meta.LastIndex < last {
					backwards.Add(1)
					t.Errorf("a default-consistency list went back from index %d to %d", last, meta.LastIndex)
				}
				last = meta.LastIndex
			}
		}()
	}

	restarts := 0
	deadline := time.Now().Add(length)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(500+rand.N(1000)) * time.Millisecond)
		n := nodes[rand.N(len(nodes))]
		n.stop()
		time.Sleep(time.Duration(rand.N(700)) * time.Millisecond)
		n.start(t)
		restarts++
	}
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Every replica converges on one state, indexes included.
	var states [3][]*consulapi.KVPair
	servertest.Eventually(t, "identical replicas", func() bool {
		for i, n := range nodes {
			pairs, _, err := n.client().KV().List("soak/", &consulapi.QueryOptions{AllowStale: true})
			if err != nil {
				return false
			}
			states[i] = pairs
		}
		return len(states[0]) >= writers*keysPerWriter &&
			reflect.DeepEqual(states[0], states[1]) && reflect.DeepEqual(states[0], states[2])
	})
	txnValues := map[string]string{}
	for _, p := range states[0] {
		if p.Key == "soak/t/a" || p.Key == "soak/t/b" {
			txnValues[p.Key] = string(p.Value)
		}
		if len(p.Key) < 6 || p.Key[:6] != "soak/w" {
			continue
		}
		var w, k int
		fmt.Sscanf(p.Key, "soak/w%d/k%02d", &w, &k)
		got, _ := strconv.ParseInt(string(p.Value), 10, 64)
		if got < prog[w].acked[k] || got > prog[w].tried[k] {
			t.Errorf("%s = %d, but %d was acknowledged and %d was the last tried", p.Key, got, prog[w].acked[k], prog[w].tried[k])
		}
	}
	if txnValues["soak/t/a"] == "" || txnValues["soak/t/a"] != txnValues["soak/t/b"] {
		t.Errorf("half a transaction applied: a=%q b=%q", txnValues["soak/t/a"], txnValues["soak/t/b"])
	}
	t.Logf("%d restarts, %d acknowledged writes, %d keys identical on 3 replicas", restarts, ackedTotal.Load(), len(states[0]))
}
