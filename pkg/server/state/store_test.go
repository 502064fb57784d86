package state

import (
	"bytes"
	"slices"
	"testing"

	memdb "github.com/hashicorp/go-memdb"
)

// apply runs ops at consecutive indexes starting at idx, one write txn each.
func apply(t *testing.T, s *Store, idx uint64, ops ...Op) uint64 {
	t.Helper()
	for i := range ops {
		w := s.Write()
		w.At(idx)
		if _, err := w.Apply(&ops[i]); err != nil {
			t.Fatalf("apply %v at %d: %v", ops[i], idx, err)
		}
		w.Commit()
		idx++
	}
	return idx
}

func set(key, value string) Op { return Op{Verb: VerbSet, Key: key, Value: []byte(value)} }

func TestKVGetIndexRules(t *testing.T) {
	s := New()
	if idx, e := s.Read().KVGet(memdb.NewWatchSet(), "a"); idx != 0 || e != nil {
		t.Fatalf("empty store: KVGet = %d, %v; want 0, nil", idx, e)
	}
	apply(t, s, 5, set("a", "1"))
	idx, e := s.Read().KVGet(memdb.NewWatchSet(), "a")
	if idx != 5 || e == nil || e.CreateIndex != 5 || e.ModifyIndex != 5 || string(e.Value) != "1" {
		t.Fatalf("KVGet(a) = %d, %+v; want index 5, value 1", idx, e)
	}
	// A missing key answers with the global KV index.
	apply(t, s, 9, set("b", "2"))
	if idx, e := s.Read().KVGet(memdb.NewWatchSet(), "zzz"); idx != 9 || e != nil {
		t.Fatalf("KVGet(missing) = %d, %v; want 9, nil", idx, e)
	}
	// Same content keeps ModifyIndex; a change moves it and keeps CreateIndex.
	apply(t, s, 10, set("a", "1"))
	if _, e := s.Read().KVGet(memdb.NewWatchSet(), "a"); e.ModifyIndex != 5 {
		t.Fatalf("no-op set moved ModifyIndex to %d, want 5", e.ModifyIndex)
	}
	apply(t, s, 11, Op{Verb: VerbSet, Key: "a", Value: []byte("1"), Flags: 3})
	if _, e := s.Read().KVGet(memdb.NewWatchSet(), "a"); e.ModifyIndex != 11 || e.CreateIndex != 5 || e.Flags != 3 {
		t.Fatalf("flag change: %+v; want ModifyIndex 11, CreateIndex 5, Flags 3", e)
	}
}

func TestPrefixIndexNeverGoesBackwards(t *testing.T) {
	s := New()
	idx := apply(t, s, 1, set("app/a", "1"), set("app/b", "2"), set("app/c", "3"), set("other", "x"))
	last := uint64(0)
	check := func(step string) {
		t.Helper()
		got, _ := s.Read().KVList(memdb.NewWatchSet(), "app/")
		if got < last {
			t.Fatalf("%s: prefix index went back from %d to %d", step, last, got)
		}
		kidx, _ := s.Read().KVKeys(memdb.NewWatchSet(), "app/", "")
		if kidx != got {
			t.Fatalf("%s: keys index %d != list index %d", step, kidx, got)
		}
		last = got
	}
	check("after puts")
	for _, k := range []string{"app/c", "app/b", "app/a"} { // delete the newest first
		idx = apply(t, s, idx, Op{Verb: VerbDelete, Key: k})
		check("delete " + k)
		if last != idx-1 {
			t.Fatalf("after delete %s the prefix index is %d, want the delete's index %d", k, last, idx-1)
		}
	}
	if _, entries := s.Read().KVList(memdb.NewWatchSet(), "app/"); len(entries) != 0 {
		t.Fatalf("entries left: %d", len(entries))
	}
	// A write elsewhere does not move an empty prefix that has tombstones.
	apply(t, s, idx+5, set("unrelated", "y"))
	if got, _ := s.Read().KVList(memdb.NewWatchSet(), "app/"); got != last {
		t.Fatalf("prefix index moved to %d on an unrelated write, want %d", got, last)
	}
	// A prefix that never had anything answers with the global index.
	if got, _ := s.Read().KVList(memdb.NewWatchSet(), "never/"); got != idx+5 {
		t.Fatalf("empty prefix index = %d, want global %d", got, idx+5)
	}
}

func TestKVKeysSeparator(t *testing.T) {
	s := New()
	apply(t, s, 1, set("conf/app/name", ""), set("conf/app-dev/name", ""), set("conf/dir/", ""),
		set("conf/dir/sub/leaf", ""), set("conf/top", ""))
	tests := []struct {
		prefix, sep string
		want        []string
	}{
		{"conf/", "/", []string{"conf/app-dev/", "conf/app/", "conf/dir/", "conf/top"}},
		{"conf/", "", []string{"conf/app-dev/name", "conf/app/name", "conf/dir/", "conf/dir/sub/leaf", "conf/top"}},
		{"conf/dir/", "/", []string{"conf/dir/", "conf/dir/sub/"}},
		{"nothing", "/", nil},
	}
	for _, tc := range tests {
		_, got := s.Read().KVKeys(memdb.NewWatchSet(), tc.prefix, tc.sep)
		if !slices.Equal(got, tc.want) {
			t.Errorf("KVKeys(%q, %q) = %q, want %q", tc.prefix, tc.sep, got, tc.want)
		}
	}
}

func TestCASAndDeleteCAS(t *testing.T) {
	s := New()
	w := s.Write()
	w.At(1)
	steps := []struct {
		op   Op
		want bool
	}{
		{Op{Verb: VerbCAS, Key: "k", Value: []byte("1"), Index: 0}, true},  // create-only
		{Op{Verb: VerbCAS, Key: "k", Value: []byte("2"), Index: 0}, false}, // exists
		{Op{Verb: VerbCAS, Key: "k", Value: []byte("2"), Index: 7}, false}, // stale
		{Op{Verb: VerbCAS, Key: "k", Value: []byte("2"), Index: 1}, true},
		{Op{Verb: VerbDeleteCAS, Key: "k", Index: 1}, false},
		{Op{Verb: VerbDeleteCAS, Key: "missing", Index: 4}, true},
	}
	for i, st := range steps {
		w.At(uint64(i + 1))
		got, err := w.Apply(&st.op)
		if err != nil || got != st.want {
			t.Fatalf("step %d %+v = %v, %v; want %v", i, st.op, got, err, st.want)
		}
	}
	w.Commit()
	_, e := s.Read().KVGet(memdb.NewWatchSet(), "k")
	if string(e.Value) != "2" || e.ModifyIndex != 4 {
		t.Fatalf("k = %+v, want value 2 at index 4", e)
	}
}

func TestTxnAllOrNothing(t *testing.T) {
	s := New()
	apply(t, s, 1, set("a", "1"))
	w := s.Write()
	w.At(2)
	res := w.Txn([]Op{
		{Verb: VerbSet, Key: "b", Value: []byte("2")},
		{Verb: VerbCheckNotExists, Key: "a"},
		{Verb: VerbCheckIndex, Key: "a", Index: 99},
	})
	if len(res.Errors) != 2 || res.Errors[0].OpIndex != 1 || res.Errors[1].OpIndex != 2 || res.Entries != nil {
		t.Fatalf("txn result = %+v; want errors at ops 1 and 2 and no entries", res)
	}
	if res.Errors[0].What != `key "a" exists` {
		t.Fatalf("error text %q", res.Errors[0].What)
	}
	w.Abort()
	if _, e := s.Read().KVGet(memdb.NewWatchSet(), "b"); e != nil {
		t.Fatalf("rolled back set is visible: %+v", e)
	}

	w = s.Write()
	w.At(3)
	res = w.Txn([]Op{
		{Verb: VerbSet, Key: "b", Value: []byte("2")},
		{Verb: VerbGet, Key: "a"},
		{Verb: VerbCheckIndex, Key: "a", Index: 1},
		{Verb: VerbGetTree, Key: ""},
		{Verb: VerbDelete, Key: "a"},
	})
	w.Commit()
	if len(res.Errors) != 0 || len(res.Entries) != 5 {
		t.Fatalf("txn = %+v; want 5 entries (set, get, check-index, tree of 2)", res)
	}
	if res.Entries[0].Value != nil || string(res.Entries[1].Value) != "1" || res.Entries[2].Value != nil {
		t.Fatalf("values: set %q get %q check %q; want nil, 1, nil", res.Entries[0].Value, res.Entries[1].Value, res.Entries[2].Value)
	}
	if _, e := s.Read().KVGet(memdb.NewWatchSet(), "a"); e != nil {
		t.Fatal("delete in txn did not apply")
	}
}

func TestWatchFiresOnlyForWhatWasRead(t *testing.T) {
	s := New()
	apply(t, s, 1, set("watched", "1"), set("other", "1"))
	ws := memdb.NewWatchSet()
	s.Read().KVGet(ws, "watched")
	apply(t, s, 3, set("other", "2"))
	if fired(ws) {
		t.Fatal("a write to another key woke the watch")
	}
	apply(t, s, 4, set("watched", "2"))
	if !fired(ws) {
		t.Fatal("a write to the watched key did not wake the watch")
	}
}

// fired reports whether any channel of the watch set is closed, without
// waiting.
func fired(ws memdb.WatchSet) bool {
	for ch := range ws {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

func TestSnapshotRoundTripAndAbandon(t *testing.T) {
	s := New()
	idx := apply(t, s, 1, set("a", "1"), Op{Verb: VerbSet, Key: "b", Value: []byte{0, 1, 2}, Flags: 1 << 63}, set("c", ""))
	apply(t, s, idx, Op{Verb: VerbDelete, Key: "c"})
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	abandon := s.Read().AbandonCh()
	fresh := New()
	if err := fresh.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, st := range []*Store{s, fresh} {
		idx, entries := st.Read().KVList(memdb.NewWatchSet(), "")
		if idx != 4 || len(entries) != 2 || entries[1].Flags != 1<<63 || !bytes.Equal(entries[1].Value, []byte{0, 1, 2}) {
			t.Fatalf("state after round trip: index %d entries %+v", idx, entries)
		}
		if ts := st.Read().Tombstones(); len(ts) != 1 || ts[0].Key != "c" || ts[0].Index != 4 {
			t.Fatalf("tombstones = %+v", ts)
		}
	}
	if err := s.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	select {
	case <-abandon:
	default:
		t.Fatal("restore did not close the abandon channel")
	}
	for _, bad := range [][]byte{nil, []byte("nope"), buf.Bytes()[:buf.Len()-3]} {
		if err := New().Restore(bytes.NewReader(bad)); err == nil {
			t.Fatalf("restore of %d corrupt bytes succeeded", len(bad))
		}
	}
}

func TestReapTombstones(t *testing.T) {
	s := New()
	idx := apply(t, s, 1, set("a", "1"), set("b", "1"))
	idx = apply(t, s, idx, Op{Verb: VerbDelete, Key: "a"}, Op{Verb: VerbDelete, Key: "b"}) // tombstones at 3, 4
	w := s.Write()
	w.At(idx)
	if n := w.ReapTombstones(3); n != 1 {
		t.Fatalf("reaped %d, want 1", n)
	}
	w.Commit()
	if ts := s.Read().Tombstones(); len(ts) != 1 || ts[0].Key != "b" {
		t.Fatalf("tombstones left = %+v, want only b", ts)
	}
}
