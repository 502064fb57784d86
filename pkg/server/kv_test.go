package server_test

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// mustPut writes key. A write refused because leadership changed under it
// (a loaded 2-core machine can miss a 300 ms heartbeat) was not
// acknowledged, so it is sent again, as a client does, until a deadline:
// the put is idempotent.
func mustPut(t *testing.T, kv *consulapi.KV, key, value string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := kv.Put(&consulapi.KVPair{Key: key, Value: []byte(value)}, nil)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "leadership lost") && !strings.Contains(err.Error(), "No cluster leader") || time.Now().After(deadline) {
			t.Fatalf("put %s: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestKVThroughConsulClient(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()

	pair, meta, err := kv.Get("conf/missing", nil)
	if err != nil || pair != nil || meta.LastIndex == 0 || !meta.KnownLeader {
		t.Fatalf("get missing = %v, %+v, %v; want nil with index >= 1 and a known leader", pair, meta, err)
	}

	const lockFlag = 0x2ddccbc058a50c18 // above 2^53: must survive exactly
	if _, err := kv.Put(&consulapi.KVPair{Key: "conf/app/flagged", Value: []byte("x"), Flags: lockFlag}, nil); err != nil {
		t.Fatal(err)
	}
	mustPut(t, kv, "conf/app/name", "web")
	mustPut(t, kv, "conf/app/empty", "")
	mustPut(t, kv, "conf/app-dev/name", "dev")
	mustPut(t, kv, "conf/files/app.json", `{"a":1}`)

	pair, meta, err = kv.Get("conf/app/flagged", nil)
	if err != nil || pair.Flags != lockFlag || string(pair.Value) != "x" || meta.LastIndex != pair.ModifyIndex {
		t.Fatalf("flagged = %+v (meta %+v), %v", pair, meta, err)
	}
	if pair, _, _ := kv.Get("conf/app/empty", nil); pair == nil || len(pair.Value) != 0 {
		t.Fatalf("empty value = %+v", pair)
	}

	pairs, _, err := kv.List("conf/app", nil) // string prefix: takes app-dev too
	if err != nil || len(pairs) != 4 {
		t.Fatalf("list conf/app = %d pairs, %v; want 4", len(pairs), err)
	}
	keys, _, err := kv.Keys("conf/", "/", nil)
	want := []string{"conf/app-dev/", "conf/app/", "conf/files/"}
	if err != nil || !slices.Equal(keys, want) {
		t.Fatalf("keys = %q, %v; want %q", keys, err, want)
	}

	// CAS: create-only, stale, current.
	ok, _, err := kv.CAS(&consulapi.KVPair{Key: "conf/cas", Value: []byte("1"), ModifyIndex: 0}, nil)
	if err != nil || !ok {
		t.Fatalf("create-only cas = %v, %v", ok, err)
	}
	if ok, _, _ := kv.CAS(&consulapi.KVPair{Key: "conf/cas", Value: []byte("2"), ModifyIndex: 0}, nil); ok {
		t.Fatal("create-only cas on an existing key succeeded")
	}
	cur, _, _ := kv.Get("conf/cas", nil)
	if ok, _, _ := kv.CAS(&consulapi.KVPair{Key: "conf/cas", Value: []byte("2"), ModifyIndex: cur.ModifyIndex + 100}, nil); ok {
		t.Fatal("cas with a stale index succeeded")
	}
	if ok, _, _ := kv.CAS(&consulapi.KVPair{Key: "conf/cas", Value: []byte("2"), ModifyIndex: cur.ModifyIndex}, nil); !ok {
		t.Fatal("cas with the current index failed")
	}
	if ok, _, _ := kv.DeleteCAS(&consulapi.KVPair{Key: "conf/cas", ModifyIndex: cur.ModifyIndex}, nil); ok {
		t.Fatal("delete-cas with a stale index succeeded")
	}

	// Deleting an exact key leaves a sibling prefix alone; a tree delete takes the tree.
	if _, err := kv.Delete("conf/app/name", nil); err != nil {
		t.Fatal(err)
	}
	if pair, _, _ := kv.Get("conf/app-dev/name", nil); pair == nil {
		t.Fatal("deleting conf/app/name took conf/app-dev/name")
	}
	if _, err := kv.DeleteTree("conf/app/", nil); err != nil {
		t.Fatal(err)
	}
	if pairs, _, _ := kv.List("conf/app/", nil); len(pairs) != 0 {
		t.Fatalf("tree delete left %d keys", len(pairs))
	}
	if pair, _, _ := kv.Get("conf/app-dev/name", nil); pair == nil {
		t.Fatal("tree delete of conf/app/ took conf/app-dev/name")
	}

	// Raw value.
	resp, err := http.Get("http://" + srv.HTTPAddr() + "/v1/kv/conf/files/app.json?raw")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `{"a":1}` || resp.Header.Get("X-Consul-Index") == "" {
		t.Fatalf("raw = %q (headers %v)", body, resp.Header)
	}
}

func TestBlockingQueryWakesOnChangeAndTimesOut(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	mustPut(t, kv, "watch/me", "1")
	_, meta, err := kv.Get("watch/me", nil)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing changes: the query returns at its wait with the same index.
	start := time.Now()
	_, meta2, err := kv.Get("watch/me", &consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 300 * time.Millisecond})
	if err != nil || meta2.LastIndex != meta.LastIndex {
		t.Fatalf("timed-out query = %+v, %v; want index %d", meta2, err, meta.LastIndex)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Fatalf("blocking query returned after %s, before its wait of 300ms", elapsed)
	}

	// A write to another key does not wake it; a write to it does, long
	// before its one-minute wait.
	type answer struct {
		pair *consulapi.KVPair
		meta *consulapi.QueryMeta
		err  error
		at   time.Time
	}
	done := make(chan answer, 1)
	go func() {
		p, m, err := kv.Get("watch/me", &consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		done <- answer{p, m, err, time.Now()}
	}()
	mustPut(t, kv, "watch/other", "x")
	mustPut(t, kv, "watch/me", "1") // same value: not a change
	select {
	case a := <-done:
		t.Fatalf("query woke without a change to its key: %+v", a)
	case <-time.After(200 * time.Millisecond):
	}
	written := time.Now()
	mustPut(t, kv, "watch/me", "2")
	select {
	case a := <-done:
		if a.err != nil || string(a.pair.Value) != "2" || a.meta.LastIndex <= meta.LastIndex {
			t.Fatalf("woken query = %+v, %+v, %v", a.pair, a.meta, a.err)
		}
		t.Logf("woke %s after the write", a.at.Sub(written))
	case <-time.After(30 * time.Second):
		t.Fatal("blocking query did not wake on a change of its key")
	}

	// An old index answers at once.
	start = time.Now()
	if _, m, err := kv.Get("watch/me", &consulapi.QueryOptions{WaitIndex: 1, WaitTime: time.Minute}); err != nil || m.LastIndex <= 1 {
		t.Fatalf("old-index query = %+v, %v", m, err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("query with an old index blocked")
	}
}

func TestBlockingListWakesOnDeleteAndIndexNeverGoesBack(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	for _, k := range []string{"p/a", "p/b", "p/c"} {
		mustPut(t, kv, k, k)
	}
	_, meta, _ := kv.List("p/", nil)
	last := meta.LastIndex
	done := make(chan *consulapi.QueryMeta, 1)
	go func() {
		_, m, _ := kv.List("p/", &consulapi.QueryOptions{WaitIndex: last, WaitTime: time.Minute})
		done <- m
	}()
	if _, err := kv.Delete("p/c", nil); err != nil { // the newest key
		t.Fatal(err)
	}
	select {
	case m := <-done:
		if m == nil || m.LastIndex <= last {
			t.Fatalf("list woke with %+v, want an index above %d", m, last)
		}
		last = m.LastIndex
	case <-time.After(30 * time.Second):
		t.Fatal("delete under the prefix did not wake the list query")
	}
	for _, k := range []string{"p/b", "p/a"} {
		if _, err := kv.Delete(k, nil); err != nil {
			t.Fatal(err)
		}
		_, m, err := kv.List("p/", nil)
		if err != nil || m.LastIndex < last {
			t.Fatalf("after deleting %s the prefix index is %d, was %d", k, m.LastIndex, last)
		}
		last = m.LastIndex
		if _, km, _ := kv.Keys("p/", "", nil); km.LastIndex != last {
			t.Fatalf("keys index %d != list index %d", km.LastIndex, last)
		}
	}
}

func TestTxn(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	mustPut(t, c.KV(), "t/existing", "e")

	ok, resp, _, err := c.Txn().Txn(consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: "t/a", Value: []byte("a")}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: "t/b", Value: []byte("b"), Flags: 7}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVGet, Key: "t/existing"}},
	}, nil)
	if err != nil || !ok || len(resp.Results) != 3 {
		t.Fatalf("txn = %v, %+v, %v", ok, resp, err)
	}
	if resp.Results[0].KV.Value != nil || string(resp.Results[2].KV.Value) != "e" || resp.Results[1].KV.Flags != 7 {
		t.Fatalf("results = %+v %+v %+v", resp.Results[0].KV, resp.Results[1].KV, resp.Results[2].KV)
	}
	if resp.Results[0].KV.ModifyIndex != resp.Results[1].KV.ModifyIndex {
		t.Fatal("two sets of one txn got different indexes")
	}

	// All or nothing: a failed check rolls back the set before it.
	ok, resp, _, err = c.Txn().Txn(consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: "t/c", Value: []byte("c")}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCheckNotExists, Key: "t/a"}},
	}, nil)
	if err != nil || ok || len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 1 || !strings.Contains(resp.Errors[0].What, `"t/a" exists`) {
		t.Fatalf("rolled back txn = %v, %+v, %v", ok, resp, err)
	}
	if p, _, _ := c.KV().Get("t/c", nil); p != nil {
		t.Fatal("the set of a rolled-back txn is visible")
	}

	// Read-only txn and the remaining verbs.
	a, _, _ := c.KV().Get("t/a", nil)
	ok, resp, _, err = c.Txn().Txn(consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVGetTree, Key: "t/"}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCheckIndex, Key: "t/a", Index: a.ModifyIndex}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVGetOrEmpty, Key: "t/none"}},
	}, nil)
	if err != nil || !ok || len(resp.Results) != 5 || resp.Results[4].KV.Key != "t/none" {
		t.Fatalf("read txn = %v, %+v, %v", ok, resp, err)
	}
	ok, _, _, err = c.Txn().Txn(consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCAS, Key: "t/a", Value: []byte("A"), Index: a.ModifyIndex}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVDeleteCAS, Key: "t/b", Index: 1}},
	}, nil)
	if err != nil || ok {
		t.Fatalf("txn with a stale delete-cas = %v, %v; want rolled back", ok, err)
	}
	if p, _, _ := c.KV().Get("t/a", nil); string(p.Value) != "a" {
		t.Fatal("cas of a rolled-back txn applied")
	}
	ok, _, _, err = c.Txn().Txn(consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVDeleteTree, Key: "t/"}},
	}, nil)
	if p, _, _ := c.KV().List("t/", nil); err != nil || !ok || len(p) != 0 {
		t.Fatalf("delete-tree txn = %v, %v, left %d", ok, err, len(p))
	}
}

// rawDo sends a request with the standard library and returns status and body.
func rawDo(t *testing.T, method, url string, body []byte) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestBadInputAnswers(t *testing.T) {
	srv := servertest.Start(t)
	base := "http://" + srv.HTTPAddr()
	big := bytes.Repeat([]byte("x"), 512*1024)
	ops := make([]string, 129)
	for i := range ops {
		ops[i] = `{"KV":{"Verb":"get","Key":"k"}}`
	}
	tests := []struct {
		name, method, path string
		body               []byte
		code               int
		contains           string
	}{
		{"value at the limit", "PUT", "/v1/kv/big/ok", big, 200, "true"},
		{"value over the limit", "PUT", "/v1/kv/big/no", append(big, 'x'), 413, "too large"},
		{"bad flags", "PUT", "/v1/kv/k?flags=abc", []byte("x"), 500, "invalid syntax"},
		{"bad index", "GET", "/v1/kv/k?index=abc", nil, 400, "Invalid index"},
		{"bad wait", "GET", "/v1/kv/k?index=1&wait=forever", nil, 400, "Invalid wait time"},
		{"cas with acquire", "PUT", "/v1/kv/k?cas=0&acquire=abc", []byte("x"), 400, "Conflicting flags"},
		{"recurse with cas", "DELETE", "/v1/kv/k?cas=1&recurse", nil, 400, "Conflicting flags"},
		{"stale with consistent", "GET", "/v1/kv/k?stale&consistent", nil, 400, "conflicting semantics"},
		{"wrong method", "POST", "/v1/kv/k", []byte("x"), 405, "method POST not allowed"},
		{"missing key", "PUT", "/v1/kv/", []byte("x"), 400, "Missing key name"},
		{"dot-dot segment", "PUT", "/v1/kv/a/%2E%2E/b", []byte("x"), 400, "Invalid key name"},
		{"foreign dc", "GET", "/v1/kv/k?dc=dc9", nil, 500, "No path to datacenter"},
		{"namespace", "GET", "/v1/kv/k?ns=team", nil, 400, "Namespaces"},
		{"unknown session", "PUT", "/v1/kv/k?acquire=abc", []byte("x"), 500, "session"},
		{"txn not json", "PUT", "/v1/txn", []byte("not json"), 400, "Failed to parse body"},
		{"txn bad verb", "PUT", "/v1/txn", []byte(`[{"KV":{"Verb":"frobnicate","Key":"k"}}]`), 409, "unknown KV operation: frobnicate"},
		{"txn too many ops", "PUT", "/v1/txn", []byte("[" + strings.Join(ops, ",") + "]"), 413, "too many operations"},
		{"txn body too large", "PUT", "/v1/txn", append([]byte(`[{"KV":{"Verb":"set","Key":"k","Value":"`), big...), 413, "too large"},
		{"txn wrong method", "GET", "/v1/txn", nil, 405, "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := rawDo(t, tc.method, base+tc.path, tc.body)
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Fatalf("%s %s = %d %q; want %d containing %q", tc.method, tc.path, code, body, tc.code, tc.contains)
			}
			if code == 405 && hdr.Get("Allow") == "" {
				t.Fatal("405 without an Allow header")
			}
		})
	}
	// Nothing was written by the refused requests.
	pairs, _, err := srv.Client.KV().List("", nil)
	if err != nil || len(pairs) != 1 || pairs[0].Key != "big/ok" {
		t.Fatalf("after bad input the store holds %d keys (%v), want only big/ok", len(pairs), err)
	}
}
