package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/; CI runs each target
// for a short time with -fuzz.

func FuzzParseTxn(f *testing.F) {
	f.Add([]byte(`[{"KV":{"Verb":"set","Key":"a","Value":"YQ=="}},{"KV":{"Verb":"get","Key":"a"}}]`))
	f.Add([]byte(`[{"KV":{"Verb":"cas","Key":"a","Index":3,"Flags":18446744073709551615}}]`))
	f.Add([]byte(`[{"KV":{"Verb":"delete-tree","Key":""}},{"Node":{}}]`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, bad, err := parseTxn(body)
		if err != nil {
			if ops != nil || bad != nil {
				t.Fatalf("error %v with ops %v / bad %v", err, ops, bad)
			}
			return
		}
		if len(ops)+len(bad) > maxTxnOps {
			t.Fatalf("%d ops accepted, limit %d", len(ops)+len(bad), maxTxnOps)
		}
		for _, op := range ops {
			if !op.Verb.Known() {
				t.Fatalf("unknown verb %q accepted", op.Verb)
			}
			if op.Key == "" && op.Verb != state.VerbGetTree && op.Verb != state.VerbDeleteTree {
				t.Fatalf("verb %s without a key accepted", op.Verb)
			}
			if len(op.Value) > maxValueSize {
				t.Fatalf("value of %d bytes accepted", len(op.Value))
			}
		}
		// What was accepted must survive the Raft encoding unchanged.
		c, err := decodeCommand(encodeTxn(ops))
		if err != nil {
			t.Fatalf("decode of an encoded txn: %v", err)
		}
		if len(ops) > 0 && !reflect.DeepEqual(normalize(c.ops), normalize(ops)) {
			t.Fatalf("round trip: got %+v, want %+v", c.ops, ops)
		}
	})
}

func normalize(ops []state.Op) []state.Op {
	out := make([]state.Op, len(ops))
	for i, op := range ops {
		if len(op.Value) == 0 {
			op.Value = nil
		}
		out[i] = op
	}
	return out
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(encodeKV(&state.Op{Verb: state.VerbSet, Key: "k", Value: []byte("v"), Flags: 42}))
	f.Add(encodeTxn([]state.Op{{Verb: state.VerbCAS, Key: "a", Index: 9}, {Verb: state.VerbDeleteTree, Key: "p/"}}))
	f.Add(encodeReap(77))
	f.Add([]byte{2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	reg, _ := encodeRegister(&state.Registration{Node: state.Node{Node: "n", Address: "10.0.0.1"},
		Service: &state.Service{ID: "web", Service: "web", Tags: []string{"a"}}, Checks: []*state.Check{{CheckID: "c", Status: "passing"}}})
	f.Add(reg)
	dereg, _ := encodeDeregister(&state.Deregistration{Node: "n", ServiceID: "web"})
	f.Add(dereg)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCommand(data)
		if err != nil {
			return
		}
		var again []byte
		switch c.typ {
		case cmdKV:
			again = encodeKV(&c.ops[0])
		case cmdTxn:
			again = encodeTxn(c.ops)
		case cmdReap:
			again = encodeReap(c.index)
		case cmdRegister:
			again, err = encodeRegister(c.reg)
		case cmdDeregister:
			again, err = encodeDeregister(c.dereg)
		case cmdSession:
			again, err = encodeSession(c.sess)
		case cmdEvent:
			again, err = encodeEvent(c.event)
		case cmdACL:
			again, err = encodeACL(c.acl)
		default:
			t.Fatalf("decoded a command of type %d that the test cannot encode again", c.typ)
		}
		if err != nil {
			t.Fatalf("re-encode %+v: %v", c, err)
		}
		c2, err := decodeCommand(again)
		if err != nil || !reflect.DeepEqual(normalize(c2.ops), normalize(c.ops)) || c2.index != c.index ||
			!reflect.DeepEqual(c2.reg, c.reg) || !reflect.DeepEqual(c2.dereg, c.dereg) ||
			!reflect.DeepEqual(c2.sess, c.sess) || !reflect.DeepEqual(c2.event, c.event) || !reflect.DeepEqual(c2.acl, c.acl) {
			t.Fatalf("re-encode changed the command: %+v vs %+v (%v)", c2, c, err)
		}
	})
}

var (
	fuzzOnce sync.Once
	fuzzSrv  *Server
)

// FuzzKVRequest sends arbitrary KV requests to a real in-memory server and
// checks that each gets a Consul status, never a crash, and that the state
// stays well formed.
func FuzzKVRequest(f *testing.F) {
	f.Add("PUT", "conf/a?flags=42", []byte("x"))
	f.Add("GET", "conf/?recurse", []byte(nil))
	f.Add("GET", "conf/?keys&separator=/", []byte(nil))
	f.Add("DELETE", "conf/?recurse", []byte(nil))
	f.Add("PUT", "conf/a?cas=0", []byte("y"))
	f.Add("GET", "conf/a?index=1&wait=1ms", []byte(nil))
	f.Add("PUT", "conf/a?acquire=x&release=y", []byte(nil))
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		fuzzOnce.Do(func() {
			var err error
			fuzzSrv, err = New(Options{Dev: true, NodeName: "fuzz", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0"})
			if err != nil {
				panic(err)
			}
			for !fuzzSrv.IsLeader() {
				fuzzSrv.WaitForLeader(t.Context())
			}
		})
		req, err := http.NewRequest(method, "http://kvx/v1/kv/"+target, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		if q := req.URL.Query(); q.Has("index") && q.Get("index") != "0" {
			q.Set("wait", "1ms") // a blocking query would otherwise hold for minutes
			req.URL.RawQuery = q.Encode()
		}
		rec := httptest.NewRecorder()
		fuzzSrv.handler().ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 301, 307, 400, 404, 405, 413: // 301/307: ServeMux cleaning "//"
		case 500:
			msg := rec.Body.String()
			if !strings.Contains(msg, "strconv.ParseUint") && !strings.Contains(msg, "session") && !strings.Contains(msg, "No path to datacenter") {
				t.Fatalf("%s %s: 500 %q", method, target, msg)
			}
		default:
			t.Fatalf("%s %s: unexpected status %d %q", method, target, rec.Code, rec.Body.String())
		}
		_, entries := fuzzSrv.store.Read().KVList(memdb.NewWatchSet(), "")
		for _, e := range entries {
			if e.CreateIndex == 0 || e.ModifyIndex < e.CreateIndex || len(e.Value) > maxValueSize {
				t.Fatalf("malformed entry after %s %s: %+v", method, target, e)
			}
		}
	})
}
