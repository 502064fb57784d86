package server_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// holdCounter records how many holders a lock or semaphore has at once.
type holdCounter struct {
	now, max, total atomic.Int64
}

func (h *holdCounter) enter() {
	n := h.now.Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if n <= m || h.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (h *holdCounter) leave() { h.now.Add(-1) }

func TestLockContendersNeverHoldAtOnce(t *testing.T) {
	srv := servertest.Start(t)
	var h holdCounter
	var wg sync.WaitGroup
	const contenders, rounds = 3, 4
	for i := range contenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				l, err := srv.Client.LockKey("jobs/nightly/.lock")
				if err != nil {
					t.Errorf("contender %d: %v", i, err)
					return
				}
				lost, err := l.Lock(nil)
				if err != nil {
					t.Errorf("contender %d round %d: lock: %v", i, r, err)
					return
				}
				h.enter()
				select {
				case <-lost:
					t.Errorf("contender %d lost the lock it holds", i)
				case <-time.After(20 * time.Millisecond):
				}
				h.leave()
				if err := l.Unlock(); err != nil {
					t.Errorf("contender %d: unlock: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	if h.max.Load() != 1 || h.total.Load() != contenders*rounds {
		t.Fatalf("at most %d holders at once, %d holds; want 1 and %d", h.max.Load(), h.total.Load(), contenders*rounds)
	}
	pair, _, err := srv.Client.KV().Get("jobs/nightly/.lock", nil)
	if err != nil || pair == nil || pair.Session != "" || pair.LockIndex != contenders*rounds {
		t.Fatalf("lock key after the rounds = %+v, %v; want released with LockIndex %d", pair, err, contenders*rounds)
	}
}

func TestDestroyedSessionClosesLostChannel(t *testing.T) {
	srv := servertest.Start(t)
	l, err := srv.Client.LockOpts(&consulapi.LockOptions{Key: "svc/leader", SessionTTL: "10s"})
	if err != nil {
		t.Fatal(err)
	}
	lost, err := l.Lock(nil)
	if err != nil {
		t.Fatal(err)
	}
	pair, _, err := srv.Client.KV().Get("svc/leader", nil)
	if err != nil || pair == nil || pair.Session == "" {
		t.Fatalf("lock key = %+v, %v", pair, err)
	}
	if _, err := srv.Client.Session().Destroy(pair.Session, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(time.Minute):
		t.Fatal("the lost channel stayed open after the session was destroyed")
	}
	pair, _, _ = srv.Client.KV().Get("svc/leader", nil)
	if pair == nil || pair.Session != "" {
		t.Fatalf("lock key after destroy = %+v; want released", pair)
	}
}

func TestSemaphoreLimitRespected(t *testing.T) {
	srv := servertest.Start(t)
	var h holdCounter
	var wg sync.WaitGroup
	const contenders, limit = 5, 2
	for i := range contenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem, err := srv.Client.SemaphorePrefix("sem/pool", limit)
			if err != nil {
				t.Errorf("contender %d: %v", i, err)
				return
			}
			for range 2 {
				lost, err := sem.Acquire(nil)
				if err != nil || lost == nil {
					t.Errorf("contender %d: acquire: %v", i, err)
					return
				}
				h.enter()
				time.Sleep(20 * time.Millisecond)
				h.leave()
				if err := sem.Release(); err != nil {
					t.Errorf("contender %d: release: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	if h.max.Load() > limit || h.total.Load() != contenders*2 {
		t.Fatalf("at most %d holders at once, %d holds; want <= %d and %d", h.max.Load(), h.total.Load(), limit, contenders*2)
	}
}

func createSession(t *testing.T, c *consulapi.Client, se *consulapi.SessionEntry) string {
	t.Helper()
	id, _, err := c.Session().Create(se, nil)
	if err != nil {
		t.Fatalf("create session %+v: %v", se, err)
	}
	return id
}

func acquire(t *testing.T, c *consulapi.Client, key, session string) bool {
	t.Helper()
	ok, _, err := c.KV().Acquire(&consulapi.KVPair{Key: key, Value: []byte(session), Session: session}, nil)
	if err != nil {
		t.Fatalf("acquire %s by %s: %v", key, session, err)
	}
	return ok
}

func TestSessionDefaultsAndReads(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	id := createSession(t, c, &consulapi.SessionEntry{Name: "a", TTL: "30s"})
	got, meta, err := c.Session().Info(id, nil)
	if err != nil || got == nil {
		t.Fatalf("info = %+v, %v", got, err)
	}
	if got.Node != "kvx-test" || got.LockDelay != 15*time.Second || got.Behavior != "release" ||
		got.TTL != "30s" || len(got.NodeChecks) != 1 || got.NodeChecks[0] != "serfHealth" {
		t.Fatalf("session = %+v; want Consul's defaults", got)
	}
	// A blocking list wakes when a session is created.
	done := make(chan []*consulapi.SessionEntry, 1)
	go func() {
		l, _, err := c.Session().List(&consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		if err != nil {
			t.Error(err)
		}
		done <- l
	}()
	id2, _, err := c.Session().CreateNoChecks(&consulapi.SessionEntry{Name: "b", LockDelay: 90 * time.Second, Behavior: "delete"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := <-done; len(l) != 2 {
		t.Fatalf("blocking list woke with %d sessions, want 2", len(l))
	}
	b, _, _ := c.Session().Info(id2, nil)
	if b == nil || len(b.NodeChecks) != 0 || b.LockDelay != 60*time.Second || b.Behavior != "delete" {
		t.Fatalf("session b = %+v; want no checks, lock delay capped at 60s, delete", b)
	}
	node, _, err := c.Session().Node("kvx-test", nil)
	if err != nil || len(node) != 2 {
		t.Fatalf("node sessions = %d, %v", len(node), err)
	}
	if _, _, err := c.Session().Renew(id, nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*consulapi.SessionEntry{
		{TTL: "5s"}, {TTL: "25h"}, {Behavior: "explode"}, {Node: "nowhere"}, {Checks: []string{"nope"}},
	} {
		if _, _, err := c.Session().Create(bad, nil); err == nil {
			t.Errorf("create %+v succeeded, want refused", bad)
		}
	}
	if _, err := c.Session().Destroy(id, nil); err != nil {
		t.Fatal(err)
	}
	if s, _, err := c.Session().Renew(id, nil); err != nil || s != nil {
		t.Fatalf("renew of a destroyed session = %+v, %v; want nil (404)", s, err)
	}
}

func TestAcquireReleaseRules(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	a := createSession(t, c, &consulapi.SessionEntry{Name: "a", LockDelay: time.Millisecond})
	b := createSession(t, c, &consulapi.SessionEntry{Name: "b"})
	if !acquire(t, c, "k", a) {
		t.Fatal("first acquire refused")
	}
	if acquire(t, c, "k", b) {
		t.Fatal("acquire of a held key by another session succeeded")
	}
	// The holder may acquire again: the value changes, LockIndex does not.
	ok, _, err := c.KV().Acquire(&consulapi.KVPair{Key: "k", Value: []byte("again"), Session: a}, nil)
	if err != nil || !ok {
		t.Fatalf("re-acquire by holder = %v, %v", ok, err)
	}
	p, _, _ := c.KV().Get("k", nil)
	if p.LockIndex != 1 || string(p.Value) != "again" || p.Session != a {
		t.Fatalf("after re-acquire: %+v", p)
	}
	// A plain put keeps the lock.
	if _, err := c.KV().Put(&consulapi.KVPair{Key: "k", Value: []byte("put")}, nil); err != nil {
		t.Fatal(err)
	}
	if p, _, _ = c.KV().Get("k", nil); p.Session != a {
		t.Fatalf("a put dropped the holder: %+v", p)
	}
	if ok, _, _ := c.KV().Release(&consulapi.KVPair{Key: "k", Session: b}, nil); ok {
		t.Fatal("release by a non-holder succeeded")
	}
	if ok, _, _ := c.KV().Release(&consulapi.KVPair{Key: "k", Session: a}, nil); !ok {
		t.Fatal("release by the holder refused")
	}
	if !acquire(t, c, "k", b) {
		t.Fatal("acquire of a released key refused")
	}
	if p, _, _ = c.KV().Get("k", nil); p.LockIndex != 2 || p.Session != b {
		t.Fatalf("after a new holder: %+v; want LockIndex 2", p)
	}
	// Txn verbs.
	ops := consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCheckSession, Key: "k", Session: b}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVLock, Key: "t", Value: []byte("x"), Session: a}},
	}
	ok, resp, _, err := c.Txn().Txn(ops, nil)
	if err != nil || !ok || len(resp.Results) != 2 || resp.Results[1].KV.Session != a || resp.Results[1].KV.LockIndex != 1 {
		t.Fatalf("txn check-session + lock = %v %+v %v", ok, resp, err)
	}
	ok, resp, _, err = c.Txn().Txn(consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVLock, Key: "t", Value: []byte("y"), Session: b}},
	}, nil)
	if err != nil || ok || len(resp.Errors) != 1 {
		t.Fatalf("txn lock of a held key = %v %+v %v; want refused", ok, resp, err)
	}
	ok, _, _, err = c.Txn().Txn(consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCheckSession, Key: "t", Session: b}},
	}, nil)
	if err != nil || ok {
		t.Fatalf("txn check-session by the wrong session = %v, %v; want refused", ok, err)
	}
	ok, _, _, err = c.Txn().Txn(consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVUnlock, Key: "t", Session: a}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCheckNotExists, Key: "nothing"}},
	}, nil)
	if err != nil || !ok {
		t.Fatalf("txn unlock = %v, %v", ok, err)
	}
	if p, _, _ = c.KV().Get("t", nil); p.Session != "" {
		t.Fatalf("after txn unlock: %+v", p)
	}
}

func TestLockDelayHonoured(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	const delay = 5 * time.Second
	a := createSession(t, c, &consulapi.SessionEntry{LockDelay: delay})
	b := createSession(t, c, &consulapi.SessionEntry{LockDelay: time.Millisecond})
	if !acquire(t, c, "held", a) {
		t.Fatal("acquire refused")
	}
	start := time.Now()
	if _, err := c.Session().Destroy(a, nil); err != nil {
		t.Fatal(err)
	}
	if ok := acquire(t, c, "held", b); ok && time.Since(start) < delay {
		t.Fatal("acquire succeeded within the lock delay")
	}
	servertest.Eventually(t, "acquire after the lock delay", func() bool { return acquire(t, c, "held", b) })
	if time.Since(start) < delay {
		t.Fatalf("acquired after %s, within the %s lock delay", time.Since(start), delay)
	}
}

func TestTTLExpiryReleasesAndDeletes(t *testing.T) {
	srv := servertest.Start(t, func(o *server.Options) { o.SessionTTLMin = 100 * time.Millisecond })
	c := srv.Client
	rel := createSession(t, c, &consulapi.SessionEntry{TTL: "200ms", LockDelay: time.Millisecond})
	del := createSession(t, c, &consulapi.SessionEntry{TTL: "200ms", Behavior: "delete", LockDelay: time.Millisecond})
	if !acquire(t, c, "ttl/rel", rel) || !acquire(t, c, "ttl/del", del) {
		t.Fatal("acquire refused")
	}
	servertest.Eventually(t, "both sessions expired", func() bool {
		l, _, err := c.Session().List(nil)
		return err == nil && len(l) == 0
	})
	p, _, _ := c.KV().Get("ttl/rel", nil)
	if p == nil || p.Session != "" {
		t.Fatalf("key of an expired release session = %+v; want released", p)
	}
	if p, _, _ = c.KV().Get("ttl/del", nil); p != nil {
		t.Fatalf("key of an expired delete session = %+v; want deleted", p)
	}
	// A renewed session lives on: renewing every 100ms keeps a 200ms TTL alive
	// long past 400ms.
	kept := createSession(t, c, &consulapi.SessionEntry{TTL: "200ms"})
	for range 10 {
		if s, _, err := c.Session().Renew(kept, nil); err != nil || s == nil {
			t.Fatalf("renew = %+v, %v", s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestCriticalCheckInvalidatesSession(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	reg := func(status string) {
		mustRegister(t, c, &consulapi.CatalogRegistration{Node: "box", Address: "10.0.0.7",
			Checks: consulapi.HealthChecks{{CheckID: "serfHealth", Name: "Serf Health Status", Status: status},
				{CheckID: "disk", Name: "disk", Status: "passing"}}})
	}
	reg("passing")
	id := createSession(t, c, &consulapi.SessionEntry{Node: "box", LockDelay: time.Millisecond})
	id2 := createSession(t, c, &consulapi.SessionEntry{Node: "box", NodeChecks: []string{"disk"}, LockDelay: time.Millisecond})
	if !acquire(t, c, "box/lock", id) || !acquire(t, c, "box/lock2", id2) {
		t.Fatal("acquire refused")
	}
	reg("critical")
	if s, _, _ := c.Session().Info(id, nil); s != nil {
		t.Fatalf("session on a critical check still there: %+v", s)
	}
	if p, _, _ := c.KV().Get("box/lock", nil); p == nil || p.Session != "" {
		t.Fatalf("key of an invalidated session = %+v; want released", p)
	}
	if s, _, _ := c.Session().Info(id2, nil); s == nil {
		t.Fatal("a session not on serfHealth was invalidated with it")
	}
	if _, _, err := c.Session().Create(&consulapi.SessionEntry{Node: "box"}, nil); err == nil {
		t.Fatal("created a session on a critical check")
	}
	// The node leaving the catalog invalidates the rest.
	if _, err := c.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: "box"}, nil); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := c.Session().Info(id2, nil); s != nil {
		t.Fatalf("session of a deregistered node still there: %+v", s)
	}
	if p, _, _ := c.KV().Get("box/lock2", nil); p == nil || p.Session != "" {
		t.Fatalf("key of a deregistered node's session = %+v; want released", p)
	}
}

// A new leader rebuilds the TTL timers: a session nobody renews after the
// leader that created it is gone still expires, and its key is released.
func TestNewLeaderExpiresSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	srvs, clients := cluster(t, func(o *server.Options) { o.SessionTTLMin = 500 * time.Millisecond })
	leader := -1
	for i, s := range srvs {
		if s.IsLeader() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	c := clients[leader]
	var id string
	servertest.Eventually(t, "a session", func() bool {
		var err error
		// No checks: only its TTL can end it (the stopped leader's serfHealth
		// turning critical would end a session on it too).
		id, _, err = c.Session().CreateNoChecks(&consulapi.SessionEntry{TTL: "1s", LockDelay: time.Millisecond}, nil)
		return err == nil
	})
	if !acquire(t, c, "ttl/leader", id) {
		t.Fatal("acquire refused")
	}
	if err := srvs[leader].Close(); err != nil {
		t.Fatal(err)
	}
	other := clients[(leader+1)%3]
	servertest.Eventually(t, "the session expired under the new leader", func() bool {
		p, _, err := other.KV().Get("ttl/leader", nil)
		return err == nil && p != nil && p.Session == ""
	})
}

// Through a follower: a session's default node is the follower's (the
// server the client asked), an event's payload reaches the leader, and the
// follower lists the event from its own state.
func TestSessionsAndEventsThroughAFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	srvs, clients := cluster(t)
	var follower *server.Server
	var c *consulapi.Client
	for i, s := range srvs {
		if !s.IsLeader() {
			follower, c = s, clients[i]
		}
	}
	var id string
	servertest.Eventually(t, "a session through the follower", func() bool {
		var err error
		id, _, err = c.Session().Create(&consulapi.SessionEntry{Name: "f"}, nil)
		return err == nil
	})
	s, _, err := c.Session().Info(id, nil)
	if err != nil || s == nil || s.Node != follower.NodeName() {
		t.Fatalf("session through the follower = %+v, %v; want node %s", s, err, follower.NodeName())
	}
	// A proxying agent names its node: the session is on that node.
	mustRegister(t, c, &consulapi.CatalogRegistration{Node: "agent1", Address: "10.0.0.5",
		Check: &consulapi.AgentCheck{CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing"}})
	req, _ := http.NewRequest("PUT", "http://"+follower.HTTPAddr()+"/v1/session/create", nil)
	req.Header.Set("X-Kvx-Node", "agent1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if s, _, err := c.Session().Info(created.ID, nil); err != nil || s == nil || s.Node != "agent1" {
		t.Fatalf("session through a proxying agent = %+v, %v; want node agent1", s, err)
	}
	eid, _, err := c.Event().Fire(&consulapi.UserEvent{Name: "deploy", Payload: []byte("v7")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the event listed by the follower", func() bool {
		l, _, err := c.Event().List("deploy", nil)
		return err == nil && len(l) == 1 && l[0].ID == eid && string(l[0].Payload) == "v7"
	})
}
