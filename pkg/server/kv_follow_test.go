package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func followKV(t *testing.T, addr, token string, stale bool) *client.KV {
	t.Helper()
	kv, err := client.NewKV(client.Options{Address: addr, Token: token, Stale: stale})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func TestFollowReadsKeysFromTheAnswersState(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	mustPut(t, kv, "f/data", "file v1")
	mustPut(t, kv, "f/sum", "s1")
	fk := followKV(t, srv.HTTPAddr(), "", false)
	ctx := context.Background()
	a, err := fk.Follow(ctx, "f/data", 0, 0, client.FollowOptions{Read: []string{"f/sum", "f/missing"}})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Found || string(a.Value) != "file v1" || !a.ReadOK || len(a.Read) != 2 {
		t.Fatalf("answer %+v", a)
	}
	if a.Read[0] == nil || a.Read[0].Key != "f/sum" || string(a.Read[0].Value) != "s1" || a.Read[1] != nil {
		t.Fatalf("reads %+v %+v", a.Read[0], a.Read[1])
	}
	// Blocked on the data, woken by a push that writes data and sum in one
	// transaction: the reads are of the state the data was read from.
	done := make(chan client.Followed, 1)
	go func() {
		a2, err := fk.Follow(ctx, "f/data", a.Index, time.Minute, client.FollowOptions{Read: []string{"f/sum"}})
		if err != nil {
			t.Error(err)
		}
		done <- a2
	}()
	servertest.Eventually(t, "the follow blocking", func() bool { return blockingQueries(t, srv) == 1 })
	ok, _, _, err := kv.Txn(consulapi.KVTxnOps{
		{Verb: consulapi.KVSet, Key: "f/data", Value: []byte("file v2")},
		{Verb: consulapi.KVSet, Key: "f/sum", Value: []byte("s2")},
	}, nil)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	a2 := <-done
	if string(a2.Value) != "file v2" || !a2.ReadOK || string(a2.Read[0].Value) != "s2" || a2.Index <= a.Index {
		t.Fatalf("woken answer %+v, read %+v", a2, a2.Read)
	}
}

func blockingQueries(t *testing.T, srv *servertest.Server) int {
	self, err := srv.Client.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(self["Stats"]["raft"].(map[string]any)["blocking_queries"].(string))
	return n
}

func TestFollowAckIsWrittenInABatch(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	mustPut(t, kv, "f/data", "x")
	ctx := context.Background()
	// Many nodes acknowledge at once: every acknowledgement lands.
	const nodes = 50
	for i := range nodes {
		fk := followKV(t, srv.HTTPAddr(), "", false)
		a, err := fk.Follow(ctx, "f/data", 0, 0, client.FollowOptions{AckKey: "f/nodes/n" + strconv.Itoa(i), AckValue: []byte(`{"node":"n` + strconv.Itoa(i) + `"}`)})
		if err != nil || !a.AckTaken || a.AckErr != "" {
			t.Fatalf("node %d: %+v %v", i, a, err)
		}
	}
	servertest.Eventually(t, "every acknowledgement stored", func() bool {
		pairs, _, err := kv.List("f/nodes/", nil)
		return err == nil && len(pairs) == nodes
	})
	for i := range nodes {
		p, _, err := kv.Get("f/nodes/n"+strconv.Itoa(i), nil)
		if err != nil || p == nil || string(p.Value) != `{"node":"n`+strconv.Itoa(i)+`"}` {
			t.Fatalf("n%d: %+v %v", i, p, err)
		}
	}
}

func TestFollowBadHeadersAnswerWhatIsWrong(t *testing.T) {
	srv := servertest.Start(t)
	mustPut(t, srv.Client.KV(), "f/data", "x")
	url := "http://" + srv.HTTPAddr() + "/v1/kv/f/data?raw"
	do := func(h, v string) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set(h, v)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	for _, tc := range []struct{ value, want string }{
		{`not json`, "X-Kvx-Read: want a JSON array of keys"},
		{`["a", "../b"]`, `X-Kvx-Read: Invalid key name: ".." segment`},
		{`[""]`, "X-Kvx-Read: empty key"},
		{`["a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a","a"]`, "X-Kvx-Read: 17 keys, at most 16"},
	} {
		if code, body, _ := do("X-Kvx-Read", tc.value); code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("X-Kvx-Read %s: %d %q, want 400 %q", tc.value, code, body, tc.want)
		}
	}
	// A bad acknowledgement does not fail the read: the answer says why it
	// was not taken, and nothing is written.
	for _, tc := range []struct{ value, want string }{
		{`no-space`, `want "<escaped key> <base64 value>"`},
		{`f/nodes/a !!!`, "X-Kvx-Ack: value: illegal base64"},
		{`f/../x ` + base64.StdEncoding.EncodeToString([]byte("v")), `".." segment`},
	} {
		code, body, h := do("X-Kvx-Ack", tc.value)
		if code != http.StatusOK || body != "x" || !strings.Contains(h.Get("X-Kvx-Ack-Error"), tc.want) || h.Get("X-Kvx-Ack") != "" {
			t.Errorf("X-Kvx-Ack %s: %d %q %q, want the value and an error %q", tc.value, code, body, h.Get("X-Kvx-Ack-Error"), tc.want)
		}
	}
	if keys, _, _ := srv.Client.KV().Keys("", "", nil); len(keys) != 1 {
		t.Fatalf("keys after refused acknowledgements: %v", keys)
	}
}

func TestFollowRespectsACLs(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	mustPut(t, mgmt.KV(), "f/data", "x")
	mustPut(t, mgmt.KV(), "secret/k", "s")
	node := servertest.TokenWithRules(t, mgmt, "node", `key_prefix "f/" { policy = "read" }
key_prefix "f/nodes/web-1" { policy = "write" }`)
	fk := followKV(t, srv.HTTPAddr(), node, false)
	ctx := context.Background()
	a, err := fk.Follow(ctx, "f/data", 0, 0, client.FollowOptions{Read: []string{"f/sum"}, AckKey: "f/nodes/web-1", AckValue: []byte("ok")})
	if err != nil || !a.AckTaken || !a.ReadOK {
		t.Fatalf("own acknowledgement: %+v %v", a, err)
	}
	a, err = fk.Follow(ctx, "f/data", 0, 0, client.FollowOptions{AckKey: "f/nodes/web-2", AckValue: []byte("forged")})
	if err != nil || a.AckTaken || !strings.Contains(a.AckErr, "permission denied") {
		t.Fatalf("another node's acknowledgement: %+v %v", a, err)
	}
	if _, err := fk.Follow(ctx, "f/data", 0, 0, client.FollowOptions{Read: []string{"secret/k"}}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("reading a key the token may not read: %v, want 403", err)
	}
	servertest.Eventually(t, "the node's own acknowledgement stored", func() bool {
		p, _, err := mgmt.KV().Get("f/nodes/web-1", nil)
		return err == nil && p != nil && string(p.Value) == "ok"
	})
	if p, _, _ := mgmt.KV().Get("f/nodes/web-2", nil); p != nil {
		t.Fatalf("a refused acknowledgement was written: %+v", p)
	}
}

func TestFollowAckThroughAFollowerReachesTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	srvs, clients := cluster(t)
	mustPut(t, clients[0].KV(), "f/data", "x")
	var follower int
	for i, s := range srvs {
		if !s.IsLeader() {
			follower = i
		}
	}
	servertest.Eventually(t, "the follower has the data", func() bool {
		p, _, err := clients[follower].KV().Get("f/data", &consulapi.QueryOptions{AllowStale: true})
		return err == nil && p != nil
	})
	// A stale read is answered by the follower itself, which hands the
	// acknowledgement to the leader.
	fk := followKV(t, srvs[follower].HTTPAddr(), "", true)
	a, err := fk.Follow(context.Background(), "f/data", 0, 0, client.FollowOptions{AckKey: "f/nodes/n1", AckValue: []byte("done")})
	if err != nil || !a.AckTaken {
		t.Fatalf("%+v %v", a, err)
	}
	for i, c := range clients {
		servertest.Eventually(t, "the acknowledgement on server "+strconv.Itoa(i), func() bool {
			p, _, err := c.KV().Get("f/nodes/n1", &consulapi.QueryOptions{AllowStale: true})
			return err == nil && p != nil && string(p.Value) == "done"
		})
	}
}

func TestGzipAnswersAreSharedAndInflateToTheSameBytes(t *testing.T) {
	srv := servertest.Start(t)
	big := bytes.Repeat([]byte("10.0.0.1 web-1.example\n"), 200)
	mustPut(t, srv.Client.KV(), "g/big", string(big))
	mustPut(t, srv.Client.KV(), "g/small", "tiny")
	get := func(path string, gz bool) (http.Header, []byte) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+path, nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport then leaves the body compressed
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		return resp.Header, b
	}
	inflate := func(b []byte) []byte {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, path := range []string{"/v1/kv/g/big?raw", "/v1/kv/g/big", "/v1/kv/g/?recurse"} {
		hPlain, plain := get(path, false)
		h1, z1 := get(path, true)
		_, z2 := get(path, true)
		if hPlain.Get("Content-Encoding") != "" || h1.Get("Content-Encoding") != "gzip" || h1.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("%s: encodings %q / %q, vary %q", path, hPlain.Get("Content-Encoding"), h1.Get("Content-Encoding"), h1.Get("Vary"))
		}
		if len(z1) >= len(plain)/2 || !bytes.Equal(inflate(z1), plain) {
			t.Fatalf("%s: %d compressed bytes for %d, or they inflate to other bytes", path, len(z1), len(plain))
		}
		if !bytes.Equal(z1, z2) {
			t.Fatalf("%s: two requests at one index got different compressed bytes", path)
		}
		if h1.Get("Content-Length") != strconv.Itoa(len(z1)) || h1.Get("X-Consul-Index") != hPlain.Get("X-Consul-Index") {
			t.Fatalf("%s: headers %v", path, h1)
		}
	}
	if _, raw := get("/v1/kv/g/big?raw", false); !bytes.Equal(raw, big) {
		t.Fatal("the raw value changed")
	}
	if h, b := get("/v1/kv/g/small?raw", true); h.Get("Content-Encoding") != "" || string(b) != "tiny" {
		t.Fatalf("a small answer: %q %q", h.Get("Content-Encoding"), b)
	}
	// consul/api asks for gzip and inflates transparently.
	if p, _, err := srv.Client.KV().Get("g/big", nil); err != nil || !bytes.Equal(p.Value, big) {
		t.Fatalf("consul/api read: %v", err)
	}
	// An answer built for one request (a read-only txn) is compressed as
	// it is written, by another compressor: it inflates to valid JSON that
	// holds the value.
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodPut, "http://"+srv.HTTPAddr()+"/v1/txn", strings.NewReader(`[{"KV":{"Verb":"get","Key":"g/big"}}]`))
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		z, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" || len(z) >= len(big)/2 {
			t.Fatalf("txn %d: %d %v, encoding %q, %d bytes", i, resp.StatusCode, err, resp.Header.Get("Content-Encoding"), len(z))
		}
		var got struct {
			Results []struct{ KV struct{ Value []byte } }
		}
		if err := json.Unmarshal(inflate(z), &got); err != nil || len(got.Results) != 1 || !bytes.Equal(got.Results[0].KV.Value, big) {
			t.Fatalf("txn %d: the inflated answer: %v, %d results", i, err, len(got.Results))
		}
	}
}

// TestFollowSaysHowLongAgoTheChangeWasApplied: a follow answer carries the
// age of its index on this server, which a node turns into the change's
// moment (client.Followed.Changed); a Consul-style GET does not carry it.
func TestFollowSaysHowLongAgoTheChangeWasApplied(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	beforePut := time.Now()
	mustPut(t, kv, "age/data", "v1")
	afterPut := time.Now()
	const pause = 50 * time.Millisecond
	time.Sleep(pause)
	fk := followKV(t, srv.HTTPAddr(), "", false)
	sent := time.Now()
	a, err := fk.Follow(context.Background(), "age/data", 0, 0, client.FollowOptions{Read: []string{"age/sum"}})
	if err != nil {
		t.Fatal(err)
	}
	received := time.Now()
	// The node dates the change from its own receipt of the answer, so it
	// may place it later than the server applied it by up to the GET's
	// round trip.
	latest := afterPut.Add(received.Sub(sent))
	if a.Changed.IsZero() || a.Changed.Before(beforePut) || a.Changed.After(latest) || received.Sub(a.Changed) < pause {
		t.Fatalf("changed %v: want within the PUT (%v to %v, plus the GET's %v), at least %v before the answer (%v)", a.Changed, beforePut, afterPut, received.Sub(sent), pause, received)
	}
	resp, err := http.Get("http://" + srv.HTTPAddr() + "/v1/kv/age/data?raw")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h, ok := resp.Header["X-Kvx-Index-Age"]; ok {
		t.Fatalf("a GET without X-Kvx-Read carries X-Kvx-Index-Age %q", h)
	}
}
