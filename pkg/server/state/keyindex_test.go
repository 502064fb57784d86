package state

import (
	"slices"
	"strings"
	"testing"
)

// The key index stores keys unterminated: keys that are prefixes of each
// other, keys holding NUL bytes and the empty prefix still list in byte
// order and are each found exactly, alone. (memdb's StringFieldIndex, which
// Consul uses, stores "a" as "a\x00", so a listing of the prefix "a\x00"
// also returned "a".)
func TestKeyIndexOrderAndExactLookups(t *testing.T) {
	s := New()
	keys := []string{"b", "a/b", "a", "ab", "a!", "a\x00b", "a\x00", "a/", "a/b/c", "\x00"}
	idx := uint64(1)
	for _, k := range keys {
		idx = apply(t, s, idx, set(k, "v:"+k))
	}
	want := slices.Clone(keys)
	slices.Sort(want) // Go compares strings byte by byte
	rt := s.Read()
	for _, prefix := range []string{"", "a", "a/", "a\x00", "b", "c"} {
		var exp []string
		for _, k := range want {
			if strings.HasPrefix(k, prefix) {
				exp = append(exp, k)
			}
		}
		_, entries := rt.KVList(nil, prefix)
		var got []string
		for _, e := range entries {
			got = append(got, e.Key)
		}
		if !slices.Equal(got, exp) {
			t.Errorf("list %q = %q, want %q", prefix, got, exp)
		}
	}
	for _, k := range keys {
		if e := rt.KVEntry(k); e == nil || e.Key != k || string(e.Value) != "v:"+k {
			t.Errorf("get %q = %+v", k, e)
		}
	}
	for _, k := range []string{"a/b/", "a\x00c", "", "ba"} {
		if e := rt.KVEntry(k); e != nil {
			t.Errorf("get %q found %q, want nothing", k, e.Key)
		}
	}
	// A deleted key leaves a tombstone, found by the same index.
	apply(t, s, idx, Op{Verb: VerbDelete, Key: "a"})
	rt = s.Read()
	if e := rt.KVEntry("a"); e != nil {
		t.Fatalf("a deleted, still read: %+v", e)
	}
	if ts := rt.Tombstones(); len(ts) != 1 || ts[0].Key != "a" {
		t.Fatalf("tombstones = %+v, want a", ts)
	}
	if rt.KVIndex() != idx {
		t.Fatalf("KV index %d, want the delete's %d", rt.KVIndex(), idx)
	}
}
