package transport

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
	"github.com/kvxproject/kvx/pkg/watch"
)

// clock is a settable time for Client.Now.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.t.Store(&t) }
func (c *clock) now() time.Time   { return *c.t.Load() }

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func TestStatusMissingKey(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "n1")
	st, err := c.Status(ctx, "app/hots")
	if !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "kvx/app/hots") || st.Checksum != "" {
		t.Fatalf("status of a key never pushed: %+v, %v", st, err)
	}
	// A deleted key whose nodes still acknowledge it: an error, and what
	// was read.
	mustPush(t, c, PushOptions{Key: "gone", Content: lines(5, "g")})
	if d := c.Deliver(ctx, DeliverOptions{Key: "gone", Path: filepath.Join(t.TempDir(), "g")}); d.Err != nil {
		t.Fatal(d.Err)
	}
	if _, err := srv.Client.KV().Delete("kvx/gone/checksum", nil); err != nil {
		t.Fatal(err)
	}
	st, err = c.Status(ctx, "gone")
	if !errors.Is(err, ErrNoKey) || st.Nodes != 1 || st.Current != 0 || len(st.Behind) != 1 {
		t.Fatalf("status of a deleted key: %+v, %v", st, err)
	}
	if st.Reached(0) || st.Reached(1) {
		t.Fatal("a key without a checksum reached its goal")
	}
}

// Each push is recorded in <key>/updated with the versions before it, so
// status says since when each laggard has lacked the current version: the
// push that replaced the version it has, or, for a node whose version is
// unknown (here: frozen before it hashed its file), the current push or
// its own word of it, whichever is later. Freezes are read with it.
func TestStatusBehindSinceAndFreezes(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	clk := newClock(t0)
	node := func(name string) *Client { c := newClient(srv, name); c.Now = clk.now; return c }
	pusher, n1, n2, n3 := node("pusher"), node("n1"), node("n2"), node("n3")
	path := func(c *Client) string { return filepath.Join(dir, c.Node) }
	deliver := func(c *Client) Delivery {
		t.Helper()
		return c.Deliver(ctx, DeliverOptions{Key: "app/hosts", Path: path(c)})
	}
	v1, v2, v3 := lines(10, "v1"), lines(10, "v2"), lines(10, "v3")
	mustPush(t, pusher, PushOptions{Key: "app/hosts", Content: v1})
	clk.set(t0.Add(time.Minute))
	for _, n := range []*Client{n1, n2, n3} {
		if d := deliver(n); d.Err != nil {
			t.Fatal(d.Err)
		}
	}
	clk.set(t0.Add(time.Hour))
	mustPush(t, pusher, PushOptions{Key: "app/hosts", Content: v2})
	deliver(n1)
	clk.set(t0.Add(2 * time.Hour))
	mustPush(t, pusher, PushOptions{Key: "app/hosts", Content: v3})
	deliver(n1)
	clk.set(t0.Add(2*time.Hour + 5*time.Minute))
	if err := n3.Freeze(ctx, path(n3), "CHG-42 disk swap"); err != nil {
		t.Fatal(err)
	}
	if d := deliver(n3); refusalCode(d.Err) != RefusedFrozen {
		t.Fatalf("frozen node: %+v", d)
	}

	p, _, err := srv.Client.KV().Get("kvx/app/hosts/updated", nil)
	if err != nil || p == nil {
		t.Fatalf("no push record: %v", err)
	}
	var rec record
	if err := json.Unmarshal(p.Value, &rec); err != nil {
		t.Fatal(err)
	}
	want := []Version{
		{checksum.Of(v3), rfc(t0.Add(2 * time.Hour)), "pusher"},
		{checksum.Of(v2), rfc(t0.Add(time.Hour)), "pusher"},
		{checksum.Of(v1), rfc(t0), "pusher"},
	}
	if got := rec.versions(); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("push record %s, want %+v", p.Value, want)
	}

	st, err := pusher.Status(ctx, "app/hosts")
	if err != nil {
		t.Fatal(err)
	}
	if st.Checksum != checksum.Of(v3) || st.Nodes != 3 || st.Current != 1 || len(st.Behind) != 2 {
		t.Fatalf("status: %+v", st)
	}
	if st.Pushed != rfc(t0.Add(2*time.Hour)) || st.PushedBy != "pusher" || st.PushedEstimated {
		t.Fatalf("pushed %q by %q (estimated %v)", st.Pushed, st.PushedBy, st.PushedEstimated)
	}
	b2, b3 := st.Behind[0], st.Behind[1]
	if b2.Node != "n2" || b2.Checksum != checksum.Of(v1) || b2.BehindSince != rfc(t0.Add(time.Hour)) || b2.VersionsBehind != 2 || b2.Frozen != "" {
		t.Fatalf("n2, two versions behind since v2's push: %+v", b2)
	}
	// A refusal's acknowledgement says which version the node holds (v1,
	// hashed before the freeze refused), so n3 is behind since v2's push.
	if b3.Node != "n3" || b3.Frozen != "CHG-42 disk swap" || b3.Code != RefusedFrozen || b3.Checksum != checksum.Of(v1) ||
		b3.BehindSince != rfc(t0.Add(time.Hour)) || b3.VersionsBehind != 2 {
		t.Fatalf("n3, frozen with v1: %+v", b3)
	}
	abs, _ := filepath.Abs(path(n3))
	if len(st.Frozen) != 1 || st.Frozen[0] != (Freeze{Node: "n3", File: abs, Reason: "CHG-42 disk swap"}) {
		t.Fatalf("frozen: %+v", st.Frozen)
	}
	if got := st.BehindList(10); got != "n2, n3 (frozen)" {
		t.Fatalf("BehindList = %q", got)
	}
	if got := st.BehindList(1); got != "n2 and 1 more" {
		t.Fatalf("BehindList(1) = %q", got)
	}
	// A current node that froze its file is listed as frozen too.
	if err := n1.Freeze(ctx, path(n1), ""); err != nil {
		t.Fatal(err)
	}
	if st, _ = pusher.Status(ctx, "app/hosts"); len(st.Frozen) != 2 || st.Frozen[0].Node != "n1" || st.Current != 1 {
		t.Fatalf("a current node's freeze: %+v", st)
	}
}

// A checksum written by another tool (consul kv put, kvexpress) has no
// push record: the push time is estimated from the first node that has
// it, and the record's history is started afresh by the next kvx in.
func TestStatusForeignWriterAndKvexpress(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	clk := newClock(t0)
	c := &Client{KV: kv, Prefix: "kvexpress", Node: "n1", Now: clk.now}
	content := lines(10, "kvexpress")
	mustPush(t, c, PushOptions{Key: "k", Content: content, Codec: Brotli})
	if p, _, _ := kv.Get("kvexpress/k/updated", nil); p == nil {
		t.Fatal("no push record under the kvexpress prefix")
	}
	// kvexpress writes a new version its own way: data and checksum only.
	other := lines(10, "by kvexpress")
	kv.Put(&consulapi.KVPair{Key: "kvexpress/k/data", Value: other}, nil)
	kv.Put(&consulapi.KVPair{Key: "kvexpress/k/checksum", Value: []byte(checksum.Of(other))}, nil)
	clk.set(t0.Add(time.Minute))
	if d := c.Deliver(ctx, DeliverOptions{Key: "k", Path: filepath.Join(t.TempDir(), "k")}); d.Err != nil {
		t.Fatal(d.Err)
	}
	st, err := c.Status(ctx, "k")
	if err != nil || st.Current != 1 || st.Pushed != rfc(t0.Add(time.Minute)) || !st.PushedEstimated || st.PushedBy != "" {
		t.Fatalf("status of a foreign version: %+v %v", st, err)
	}
	// The next kvx in records the foreign version, without a time.
	clk.set(t0.Add(time.Hour))
	mustPush(t, c, PushOptions{Key: "k", Content: lines(10, "v3")})
	p, _, _ := kv.Get("kvexpress/k/updated", nil)
	rec, ok := parseRecord(p.Value)
	if v := rec.versions(); !ok || len(v) != 3 || v[1] != (Version{Checksum: checksum.Of(other)}) || v[2].Checksum != checksum.Of(content) {
		t.Fatalf("record after a foreign version: %s", p.Value)
	}
	st, _ = c.Status(ctx, "k")
	if len(st.Behind) != 1 || st.Behind[0].BehindSince != rfc(t0.Add(time.Hour)) || st.Behind[0].VersionsBehind != 1 {
		t.Fatalf("behind after the foreign version: %+v", st.Behind)
	}
}

func TestPushRecordKeepsHistoryShort(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "n")
	for i := range historyLen + 3 {
		mustPush(t, c, PushOptions{Key: "h", Content: lines(3, strings.Repeat("x", i+1))})
	}
	p, _, _ := srv.Client.KV().Get("kvx/h/updated", nil)
	rec, ok := parseRecord(p.Value)
	if !ok || len(rec.versions()) != historyLen || rec.Checksum != checksum.Of(lines(3, strings.Repeat("x", historyLen+3))) {
		t.Fatalf("record %s", p.Value)
	}
	// Deleted and pushed again: nothing before it is known to lead there.
	srv.Client.KV().DeleteTree("kvx/h/", nil)
	mustPush(t, c, PushOptions{Key: "h", Content: lines(3, "again")})
	p, _, _ = srv.Client.KV().Get("kvx/h/updated", nil)
	if rec, ok = parseRecord(p.Value); !ok || len(rec.Previous) != 0 {
		t.Fatalf("record of a first version: %s", p.Value)
	}
}

// watchers runs kvx out --watch for each node until the test ends.
func watchers(t *testing.T, srv *servertest.Server, key string, names ...string) (paths map[string]string) {
	t.Helper()
	dir := t.TempDir()
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	paths = map[string]string{}
	for _, name := range names {
		path := filepath.Join(dir, name)
		paths[name] = path
		c := newClient(srv, name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Watch(wctx, DeliverOptions{Key: key, Path: path, AckJitter: 20 * time.Millisecond},
				watch.Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, nil)
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return paths
}

// Wait with -want all after a push: the nodes' acknowledgements still name
// the old version, and it returns once every one names the new one, which
// every node's file then holds. Progress is reported only on a change.
func TestWaitAllAcknowledgingNodes(t *testing.T) {
	srv := servertest.Start(t)
	pusher := newClient(srv, "pusher")
	names := []string{"w1", "w2", "w3", "w4", "w5"}
	paths := watchers(t, srv, "fleet/hosts", names...)
	res := mustPush(t, pusher, PushOptions{Key: "fleet/hosts", Content: lines(30, "v1")})
	// A first version: no node has acknowledged anything yet, so "all"
	// would be met by the first one; want the fleet's size.
	st, err := pusher.Wait(ctx, WaitOptions{Key: "fleet/hosts", Want: len(names), Checksum: res.Checksum, Timeout: time.Minute})
	if err != nil || st.Current != len(names) {
		t.Fatalf("wait for v1 on %d nodes: %+v %v", len(names), st, err)
	}
	v2 := lines(30, "v2")
	res = mustPush(t, pusher, PushOptions{Key: "fleet/hosts", Content: v2})
	var seen []Status
	st, err = pusher.Wait(ctx, WaitOptions{Key: "fleet/hosts", Checksum: res.Checksum, Timeout: time.Minute,
		MinInterval: time.Millisecond, Progress: func(st Status) { seen = append(seen, st) }})
	if err != nil || st.Nodes != len(names) || st.Current != len(names) || st.Checksum != checksum.Of(v2) {
		t.Fatalf("wait for all: %+v %v", st, err)
	}
	for name, p := range paths {
		if b, _ := os.ReadFile(p); string(b) != string(v2) {
			t.Fatalf("%s: wait returned before its file had v2", name)
		}
	}
	if len(seen) == 0 || seen[len(seen)-1].Current != len(names) {
		t.Fatalf("progress: %+v", seen)
	}
	for i := 1; i < len(seen); i++ {
		if signature(seen[i]) == signature(seen[i-1]) {
			t.Fatalf("progress reported an unchanged status: %+v", seen[i])
		}
	}
}

// countingKV is pkg/client's KV counting the status reads.
type countingKV struct {
	*client.KV
	txns atomic.Int64
}

func (k *countingKV) Txn(ops consulapi.KVTxnOps, q *consulapi.QueryOptions) (bool, *consulapi.KVTxnResponse, *consulapi.QueryMeta, error) {
	k.txns.Add(1)
	return k.KV.Txn(ops, q)
}

// -want N, and a timeout listing the laggards with why (a freeze among
// them); while nothing changes, the wait holds a blocking query instead of
// reading again and again.
func TestWaitWantNAndTimeout(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	pusher := newClient(srv, "pusher")
	nodes := []*Client{newClient(srv, "n1"), newClient(srv, "n2"), newClient(srv, "n3")}
	deliver := func(c *Client) Delivery {
		return c.Deliver(ctx, DeliverOptions{Key: "k", Path: filepath.Join(dir, c.Node)})
	}
	mustPush(t, pusher, PushOptions{Key: "k", Content: lines(5, "v1")})
	for _, n := range nodes {
		deliver(n)
	}
	res := mustPush(t, pusher, PushOptions{Key: "k", Content: lines(5, "v2")})
	deliver(nodes[0])
	deliver(nodes[1])
	if err := nodes[2].Freeze(ctx, filepath.Join(dir, "n3"), "hands off"); err != nil {
		t.Fatal(err)
	}
	deliver(nodes[2])
	st, err := pusher.Wait(ctx, WaitOptions{Key: "k", Want: 2, Timeout: time.Minute})
	if err != nil || st.Current != 2 {
		t.Fatalf("want 2: %+v %v", st, err)
	}
	kv := &countingKV{KV: pusher.KV.(*client.KV)}
	counted := &Client{KV: kv, Node: "pusher"}
	st, err = counted.Wait(ctx, WaitOptions{Key: "k", Checksum: res.Checksum, Timeout: time.Second, MinInterval: time.Millisecond})
	if !errors.Is(err, ErrWaitTimeout) || st.Current != 2 || len(st.Behind) != 1 {
		t.Fatalf("want all with a frozen node: %+v %v", st, err)
	}
	if b := st.Behind[0]; b.Node != "n3" || b.Frozen != "hands off" {
		t.Fatalf("laggard: %+v", b)
	}
	if msg := err.Error(); !strings.Contains(msg, "2/3 nodes") || !strings.Contains(msg, "1 behind: n3 (frozen)") || !strings.Contains(msg, "want all") {
		t.Fatalf("timeout message: %s", msg)
	}
	// The first read and the deadline's: nothing changed in between.
	if n := kv.txns.Load(); n != 2 {
		t.Fatalf("%d status reads while nothing changed, want 2", n)
	}
	if st, err := pusher.Wait(ctx, WaitOptions{Key: "k", Want: 4, Timeout: 200 * time.Millisecond}); !errors.Is(err, ErrWaitTimeout) || !strings.Contains(err.Error(), "want 4") || st.Current != 2 {
		t.Fatalf("want more nodes than acknowledge: %+v %v", st, err)
	}
}

// The wait wakes on the acknowledgement it needs (blocking query, not a
// poll), ends at once on a missing key or a newer push, and a cancelled
// context ends it promptly.
func TestWaitWakesSupersededCancelled(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	pusher := newClient(srv, "pusher")
	n1, n2 := newClient(srv, "n1"), newClient(srv, "n2")
	deliver := func(c *Client) { c.Deliver(ctx, DeliverOptions{Key: "k", Path: filepath.Join(dir, c.Node)}) }
	if _, err := pusher.Wait(ctx, WaitOptions{Key: "nope", Timeout: time.Minute}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("wait on a missing key: %v", err)
	}
	mustPush(t, pusher, PushOptions{Key: "k", Content: lines(5, "v1")})
	deliver(n1)
	deliver(n2)
	res := mustPush(t, pusher, PushOptions{Key: "k", Content: lines(5, "v2")})
	deliver(n1)

	progress := make(chan Status, 100)
	type result struct {
		st  Status
		err error
	}
	waitFor := func(wctx context.Context, sum string) chan result {
		done := make(chan result, 1)
		go func() {
			st, err := pusher.Wait(wctx, WaitOptions{Key: "k", Checksum: sum, Timeout: time.Minute, MinInterval: time.Millisecond,
				Progress: func(st Status) { progress <- st }})
			done <- result{st, err}
		}()
		return done
	}
	done := waitFor(ctx, res.Checksum)
	if st := <-progress; st.Current != 1 || st.Nodes != 2 {
		t.Fatalf("first progress: %+v", st)
	}
	deliver(n2)
	if r := <-done; r.err != nil || r.st.Current != 2 {
		t.Fatalf("woken by n2's acknowledgement: %+v %v", r.st, r.err)
	}

	res = mustPush(t, pusher, PushOptions{Key: "k", Content: lines(5, "v3")})
	done = waitFor(ctx, res.Checksum)
	for st := range progress { // the first wait's reports come first
		if st.Checksum == res.Checksum {
			if st.Current != 0 || st.Nodes != 2 {
				t.Fatalf("first progress for v3: %+v", st)
			}
			break
		}
	}
	v4 := mustPush(t, pusher, PushOptions{Key: "k", Content: lines(5, "v4")})
	if r := <-done; !errors.Is(r.err, ErrSuperseded) || r.st.Checksum != v4.Checksum {
		t.Fatalf("a newer push while waiting: %+v %v", r.st, r.err)
	}

	for len(progress) > 0 { // the last wait returned: its reports are all in
		<-progress
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done = waitFor(cctx, "")
	if st := <-progress; st.Checksum != v4.Checksum || st.Current != 0 {
		t.Fatalf("first progress of a wait for all on v4: %+v", st)
	}
	cancel()
	select {
	case r := <-done:
		if !errors.Is(r.err, context.Canceled) || r.st.Checksum == "" {
			t.Fatalf("cancelled wait: %+v %v", r.st, r.err)
		}
	case <-time.After(30 * time.Second): // a hang guard: the blocking query lasts minutes
		t.Fatal("a cancelled wait did not return")
	}
}

// With the server down, a wait retries until its deadline and says the
// reads failed; once the server is back it carries on.
func TestWaitServerDown(t *testing.T) {
	addr, raftAddr, data := servertest.FreeAddr(t), servertest.FreeAddr(t), t.TempDir()
	start := func() *servertest.Server {
		return servertest.Start(t, func(o *server.Options) { o.Dev, o.DataDir, o.HTTPAddr, o.RaftAddr = false, data, addr, raftAddr })
	}
	srv := start()
	c := newClient(srv, "n1")
	target := filepath.Join(t.TempDir(), "hosts")
	mustPush(t, c, PushOptions{Key: "down/hosts", Content: lines(5, "v1")})
	c.Deliver(ctx, DeliverOptions{Key: "down/hosts", Path: target})
	res := mustPush(t, c, PushOptions{Key: "down/hosts", Content: lines(5, "v2")})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Wait(ctx, WaitOptions{Key: "down/hosts", Checksum: res.Checksum, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrWaitTimeout) || !strings.Contains(err.Error(), "the last read failed") {
		t.Fatalf("wait with the server down: %v", err)
	}
	done := make(chan error, 1)
	var logs servertest.Buffer
	go func() {
		_, err := c.Wait(ctx, WaitOptions{Key: "down/hosts", Checksum: res.Checksum, Timeout: time.Minute,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		done <- err
	}()
	servertest.Eventually(t, "a failed read while down", func() bool { return strings.Contains(logs.String(), "failed") })
	start()
	if d := c.Deliver(ctx, DeliverOptions{Key: "down/hosts", Path: target}); d.Err != nil {
		t.Fatal(d.Err)
	}
	if err := <-done; err != nil {
		t.Fatalf("wait after the server came back: %v", err)
	}
}
