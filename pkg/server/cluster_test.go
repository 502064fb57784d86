package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func startNode(t *testing.T, opts server.Options) (*server.Server, *consulapi.Client) {
	t.Helper()
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	if opts.RaftAddr == "" {
		opts.RaftAddr = "127.0.0.1:0"
	}
	return startExact(t, opts)
}

// startExact starts a node with exactly the options given: what they leave
// empty comes from the data dir, or the defaults.
func startExact(t *testing.T, opts server.Options) (*server.Server, *consulapi.Client) {
	t.Helper()
	if os.Getenv("KVX_TEST_LOG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", opts.NodeName)
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatalf("start %s: %v", opts.NodeName, err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := client.New(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func waitLeader(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStatusAgentOperatorMetrics(t *testing.T) {
	srv := servertest.Start(t, func(o *server.Options) { o.NodeName = "kvx-node" })
	c := srv.Client
	leader, err := c.Status().Leader()
	if err != nil || leader != srv.RaftAddr() {
		t.Fatalf("leader = %q, %v; want %s", leader, err, srv.RaftAddr())
	}
	peers, err := c.Status().Peers()
	if err != nil || len(peers) != 1 || peers[0] != srv.RaftAddr() {
		t.Fatalf("peers = %q, %v", peers, err)
	}
	name, err := c.Agent().NodeName()
	if err != nil || name != "kvx-node" {
		t.Fatalf("agent node name = %q, %v", name, err)
	}
	self, err := c.Agent().Self()
	if err != nil || self["Config"]["Datacenter"] != "dc1" || self["Config"]["Version"] == "" {
		t.Fatalf("agent self config = %v, %v", self["Config"], err)
	}
	conf, err := c.Operator().RaftGetConfiguration(nil)
	if err != nil || len(conf.Servers) != 1 || !conf.Servers[0].Leader || !conf.Servers[0].Voter || conf.Servers[0].Node != "kvx-node" {
		t.Fatalf("raft configuration = %+v, %v", conf, err)
	}
	// /v1/agent/metrics answers, as Consul's does, with the last finished
	// 10 s interval once there is one: a write made in the current interval
	// shows only after the next boundary. So write, and look, until both
	// formats show a request.
	servertest.Eventually(t, "an api.http sample in both formats", func() bool {
		mustPut(t, c.KV(), "m", "1")
		m, err := c.Agent().Metrics()
		if err != nil {
			t.Fatal(err)
		}
		var sawHTTP bool
		for _, s := range m.Samples {
			sawHTTP = sawHTTP || s.Name == "kvx.api.http"
		}
		code, body, _ := rawDo(t, "GET", "http://"+srv.HTTPAddr()+"/v1/agent/metrics?format=prometheus", nil)
		if code != 200 {
			t.Fatalf("prometheus metrics = %d %q", code, body)
		}
		return sawHTTP && strings.Contains(body, "kvx_api_http_count")
	})
}

func TestRestartRecoversEveryAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	opts := server.Options{
		NodeName: "n1", DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: servertest.FreeAddr(t),
		HeartbeatTimeout: 100 * time.Millisecond,
		// Snapshot and truncate often, so recovery reads a snapshot plus a log tail.
		SnapshotThreshold: 50, SnapshotInterval: 50 * time.Millisecond, TrailingLogs: 10,
	}
	srv, c := startNode(t, opts)
	waitLeader(t, srv)
	const n = 300
	for i := 0; i < n; i++ {
		mustPut(t, c.KV(), fmt.Sprintf("r/%03d", i), fmt.Sprint(i))
	}
	if _, err := c.KV().Delete("r/000", nil); err != nil {
		t.Fatal(err)
	}
	_, before, _ := c.KV().List("r/", nil)
	servertest.Eventually(t, "a snapshot", func() bool {
		self, err := c.Agent().Self()
		return err == nil && self["Stats"]["raft"].(map[string]any)["last_snapshot_index"] != "0"
	})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv, c = startNode(t, opts)
	waitLeader(t, srv)
	pairs, after, err := c.KV().List("r/", nil)
	if err != nil || len(pairs) != n-1 {
		t.Fatalf("after restart: %d keys, %v; want %d", len(pairs), err, n-1)
	}
	for i, p := range pairs {
		if want := fmt.Sprint(i + 1); string(p.Value) != want {
			t.Fatalf("%s = %q, want %q", p.Key, p.Value, want)
		}
	}
	if after.LastIndex < before.LastIndex {
		t.Fatalf("prefix index went back over a restart: %d -> %d", before.LastIndex, after.LastIndex)
	}
}

func TestDurableNodeRejectsBadOptions(t *testing.T) {
	for _, opts := range []server.Options{
		{NodeName: "x"}, // neither dev nor data dir
		{NodeName: "x", Dev: true, DataDir: t.TempDir()},
		{NodeName: "x", Dev: true, RaftAddr: "0.0.0.0:0", HTTPAddr: "127.0.0.1:0"},
	} {
		if srv, err := server.New(opts); err == nil {
			srv.Close()
			t.Errorf("New(%+v) succeeded, want an error", opts)
		}
	}
}

// cluster starts three durable nodes that find each other through -join.
func cluster(t *testing.T, modify ...func(*server.Options)) ([]*server.Server, []*consulapi.Client) {
	t.Helper()
	var srvs []*server.Server
	var clients []*consulapi.Client
	first := ""
	for i := 1; i <= 3; i++ {
		opts := server.Options{
			NodeName: fmt.Sprintf("node%d", i), DataDir: t.TempDir(),
			BootstrapExpect: 3, HeartbeatTimeout: 300 * time.Millisecond,
		}
		if first != "" {
			opts.Join = []string{first}
		}
		for _, m := range modify {
			m(&opts)
		}
		srv, c := startNode(t, opts)
		if first == "" {
			first = srv.RaftAddr()
		}
		srvs = append(srvs, srv)
		clients = append(clients, c)
	}
	for _, s := range srvs {
		waitLeader(t, s)
	}
	return srvs, clients
}

func TestThreeNodeClusterForwardsAndSurvivesLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	logs := &servertest.Buffer{}
	srvs, clients := cluster(t, func(o *server.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil)).With("node", o.NodeName)
	})
	conf, err := clients[0].Operator().RaftGetConfiguration(nil)
	if err != nil || len(conf.Servers) != 3 {
		t.Fatalf("raft configuration = %+v, %v; want 3 servers", conf, err)
	}
	leaderIdx := -1
	for i, s := range srvs {
		if s.IsLeader() {
			leaderIdx = i
		}
	}
	if leaderIdx < 0 {
		t.Fatal("no node says it is the leader")
	}
	follower := (leaderIdx + 1) % 3

	// A write to a follower is forwarded; a default read there too.
	mustPut(t, clients[follower].KV(), "c/first", "1")
	p, meta, err := clients[follower].KV().Get("c/first", nil)
	if err != nil || p == nil || string(p.Value) != "1" || !meta.KnownLeader {
		t.Fatalf("read via follower = %+v, %v", p, err)
	}
	// A consistent read, and a stale read answered by the follower itself.
	if p, _, err := clients[follower].KV().Get("c/first", &consulapi.QueryOptions{RequireConsistent: true}); err != nil || p == nil {
		t.Fatalf("consistent read = %v, %v", p, err)
	}
	servertest.Eventually(t, "the stale read on the follower", func() bool {
		p, _, err := clients[follower].KV().Get("c/first", &consulapi.QueryOptions{AllowStale: true})
		return err == nil && p != nil
	})

	// A stream of writes through both surviving nodes; stop the leader in
	// the middle. Every write answered true must be readable afterwards.
	survivors := []int{}
	for i := range srvs {
		if i != leaderIdx {
			survivors = append(survivors, i)
		}
	}
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for w, idx := range survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kv := clients[idx].KV()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("c/stream/%d/%05d", w, i)
				if _, err := kv.Put(&consulapi.KVPair{Key: key, Value: []byte(key)}, nil); err == nil {
					mu.Lock()
					acked = append(acked, key)
					mu.Unlock()
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	servertest.Eventually(t, "writes before the leader stops", func() bool { return count() >= 50 })
	if err := srvs[leaderIdx].Close(); err != nil {
		t.Fatalf("stop leader: %v", err)
	}
	// A leader that stops hands over instead of leaving an election timeout.
	if want := `msg="leadership handed over" node=` + srvs[leaderIdx].NodeName(); !strings.Contains(logs.String(), want) {
		t.Errorf("the stopping leader did not hand over (no %q in its log)", want)
	}
	atStop := count()
	servertest.Eventually(t, "a new leader", func() bool {
		return srvs[survivors[0]].IsLeader() || srvs[survivors[1]].IsLeader()
	})
	servertest.Eventually(t, "writes after the new leader", func() bool { return count() >= atStop+50 })
	close(stop)
	wg.Wait()

	newLeader := survivors[0]
	if !srvs[newLeader].IsLeader() {
		newLeader = survivors[1]
	}
	pairs, _, err := clients[newLeader].KV().List("c/stream/", &consulapi.QueryOptions{RequireConsistent: true})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range pairs {
		have[p.Key] = true
	}
	for _, k := range acked {
		if !have[k] {
			t.Fatalf("acknowledged write %s is missing after the leader change (%d acked, %d present)", k, len(acked), len(pairs))
		}
	}
	t.Logf("%d acknowledged writes, all present; %d before the stop", len(acked), atStop)
}

func TestNodeJoinsRunningClusterAfterCompaction(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	// Snapshot and truncate early. (raft-wal still serves truncated entries
	// from its unsealed tail segment, so the late node may be sent the log or a
	// snapshot; either way it must end with every key.)
	small := func(o *server.Options) {
		o.SnapshotThreshold, o.SnapshotInterval, o.TrailingLogs = 20, 50*time.Millisecond, 5
	}
	srvs, clients := cluster(t, small)
	for i := 0; i < 100; i++ {
		mustPut(t, clients[0].KV(), fmt.Sprintf("j/%03d", i), "v")
	}
	servertest.Eventually(t, "a snapshot and compaction on every node", func() bool {
		for _, c := range clients {
			self, err := c.Agent().Self()
			if err != nil || self["Stats"]["raft"].(map[string]any)["last_snapshot_index"] == "0" {
				return false
			}
		}
		return true
	})
	opts := server.Options{NodeName: "node4", DataDir: t.TempDir(), Join: []string{srvs[1].RaftAddr()}, HeartbeatTimeout: 300 * time.Millisecond}
	small(&opts)
	late, lc := startNode(t, opts)
	waitLeader(t, late)
	servertest.Eventually(t, "node4 in the configuration", func() bool {
		conf, err := clients[0].Operator().RaftGetConfiguration(nil)
		return err == nil && len(conf.Servers) == 4
	})
	servertest.Eventually(t, "node4 holding every key", func() bool {
		pairs, _, err := lc.KV().List("j/", &consulapi.QueryOptions{AllowStale: true})
		return err == nil && len(pairs) == 100
	})
	// A write after the snapshot reaches node4 too, and wakes a stale
	// blocking query there.
	_, meta, _ := lc.KV().Get("j/after", &consulapi.QueryOptions{AllowStale: true})
	done := make(chan *consulapi.KVPair, 1)
	go func() {
		p, _, _ := lc.KV().Get("j/after", &consulapi.QueryOptions{AllowStale: true, WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		done <- p
	}()
	mustPut(t, clients[2].KV(), "j/after", "x")
	select {
	case p := <-done:
		if p == nil || string(p.Value) != "x" {
			t.Fatalf("blocking query on node4 woke with %+v", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("blocking query on node4 did not wake")
	}
}

func TestTombstonesAreReapedThroughRaft(t *testing.T) {
	srv := servertest.Start(t, func(o *server.Options) { o.TombstoneTTL = 150 * time.Millisecond })
	kv := srv.Client.KV()
	mustPut(t, kv, "gone/a", "1")
	mustPut(t, kv, "gone/b", "1")
	if _, err := kv.DeleteTree("gone/", nil); err != nil {
		t.Fatal(err)
	}
	_, meta, _ := kv.List("gone/", nil)
	deleted := meta.LastIndex
	// With the tombstones reaped, the empty prefix falls back to the global
	// index, which the reap itself (a Raft entry) does not move past the
	// next write; so write elsewhere and watch the prefix follow it.
	servertest.Eventually(t, "the tombstones to be reaped", func() bool {
		mustPut(t, kv, "elsewhere", time.Now().String())
		_, m, err := kv.List("gone/", nil)
		return err == nil && m.LastIndex > deleted
	})
}

// recordingSink keeps the names of what it was sent.
type recordingSink struct {
	mu    sync.Mutex
	names map[string]bool
}

func (r *recordingSink) add(name string) { r.mu.Lock(); r.names[name] = true; r.mu.Unlock() }
func (r *recordingSink) has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[name]
}
func (r *recordingSink) Count(n string, _ int64, tags ...string)          { r.add(n + tagSuffix(tags)) }
func (r *recordingSink) Gauge(n string, _ float64, tags ...string)        { r.add(n) }
func (r *recordingSink) Timing(n string, _ time.Duration, tags ...string) { r.add(n + tagSuffix(tags)) }

func tagSuffix(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return "#" + strings.Join(tags, ",")
}

func TestMetricsReachTheSink(t *testing.T) {
	rec := &recordingSink{names: map[string]bool{}}
	srv := servertest.Start(t, func(o *server.Options) { o.Metrics = rec })
	mustPut(t, srv.Client.KV(), "m/k", "v")
	if _, _, err := srv.Client.KV().Get("m/k", nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"kvx.raft.commitTime", "kvx.raft.fsm.applyBatch", "kvx.kvs.apply",
		"kvx.api.http#endpoint:kv,method:PUT", "kvx.api.http.requests#endpoint:kv,method:GET",
		"kvx.raft.lastContact", "kvx.rpc.queries_blocking",
	} {
		servertest.Eventually(t, "metric "+name, func() bool { return rec.has(name) })
	}
}

func TestStrangerOnAPeersAddressCannotAcknowledgeWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	var raftAddrs []string
	srvs, clients := cluster(t, func(o *server.Options) {
		o.RaftAddr = servertest.FreeAddr(t)
		raftAddrs = append(raftAddrs, o.RaftAddr)
	})
	mustPut(t, clients[0].KV(), "s/before", "1")
	leader := -1
	servertest.Eventually(t, "a leader", func() bool {
		for i, s := range srvs {
			if s.IsLeader() {
				leader = i
			}
		}
		return leader >= 0
	})
	// Both followers stop; a one-node dev server of another cluster takes
	// the address of one of them.
	var followers []int
	for i := range srvs {
		if i != leader {
			followers = append(followers, i)
			srvs[i].Close()
		}
	}
	stranger := servertest.Start(t, func(o *server.Options) {
		o.NodeName = "stranger"
		o.RaftAddr = raftAddrs[followers[0]]
	})

	// The leader has no quorum: the write must fail, not be acknowledged by
	// the stranger standing in for a peer.
	done := make(chan error, 1)
	go func() {
		_, err := clients[leader].KV().Put(&consulapi.KVPair{Key: "s/after", Value: []byte("x")}, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a write was acknowledged with both real followers down")
		}
	case <-time.After(20 * time.Second):
		// Still waiting for a quorum that cannot come: not acknowledged either.
	}
	if p, _, err := stranger.Client.KV().Get("s/after", nil); err != nil || p != nil {
		t.Fatalf("the stranger took the other cluster's write: %v, %v", p, err)
	}
	if p, _, err := stranger.Client.KV().Get("s/before", nil); err != nil || p != nil {
		t.Fatalf("the stranger took the other cluster's log: %v, %v", p, err)
	}
}

// A KV client with Stale (kvx out -stale) reads from the server it asks:
// a follower cut off from every other server still answers it (blocking
// raw read and read transaction), where a default read, which goes
// through the leader, fails.
func TestStaleKVClientReadsFromTheServerAsked(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	srvs, clients := cluster(t)
	mustPut(t, clients[0].KV(), "st/k", "v1")
	follower := -1
	for i, s := range srvs {
		if !s.IsLeader() {
			follower = i
			break
		}
	}
	servertest.Eventually(t, "the follower has the key", func() bool {
		p, _, err := clients[follower].KV().Get("st/k", &consulapi.QueryOptions{AllowStale: true})
		return err == nil && p != nil
	})
	for i, s := range srvs {
		if i != follower {
			s.Close()
		}
	}
	addr := srvs[follower].HTTPAddr()
	stale, err := client.NewKV(client.Options{Address: addr, Stale: true})
	if err != nil {
		t.Fatal(err)
	}
	def, err := client.NewKV(client.Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, found, idx, err := stale.GetRawAt(ctx, "st/k", 0, 0)
	if err != nil || !found || string(v) != "v1" || idx == 0 {
		t.Fatalf("stale raw read on the lone follower = %q %v %d %v", v, found, idx, err)
	}
	pairs, err := stale.GetKeys(ctx, []string{"st/k", "st/none"})
	if err != nil || len(pairs) != 2 || pairs[0] == nil || string(pairs[0].Value) != "v1" || pairs[1] != nil {
		t.Fatalf("stale read txn on the lone follower = %v, %v", pairs, err)
	}
	if p, _, err := stale.Get("st/k", nil); err != nil || p == nil {
		t.Fatalf("stale Get on the lone follower = %v, %v", p, err)
	}
	if _, _, err := def.GetRaw(ctx, "st/k"); err == nil {
		t.Fatal("a default read on a follower without a leader succeeded; it must go through the leader")
	}
}
