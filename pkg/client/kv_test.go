package client_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func TestGetRaw(t *testing.T) {
	srv := servertest.Start(t)
	kv, err := client.NewKV(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	value := []byte("binary\x00\xff\nvalue with \"quotes\"")
	for _, key := range []string{"raw/plain", "raw/with space/and%percent", "raw/ünïcode"} {
		if _, err := kv.Put(&consulapi.KVPair{Key: key, Value: value}, nil); err != nil {
			t.Fatal(err)
		}
		got, found, err := kv.GetRaw(context.Background(), key)
		if err != nil || !found || !bytes.Equal(got, value) {
			t.Fatalf("GetRaw(%q) = %q, %v, %v", key, got, found, err)
		}
	}
	if got, found, err := kv.GetRaw(context.Background(), "raw/missing"); err != nil || found || got != nil {
		t.Fatalf("missing key: %q, %v, %v", got, found, err)
	}
	// Errors name the key and the status.
	bad, _ := client.NewKV(client.Options{Address: srv.HTTPAddr(), Datacenter: "nowhere"})
	if _, _, err := bad.GetRaw(context.Background(), "raw/plain"); err == nil || !strings.Contains(err.Error(), "raw/plain") {
		t.Fatalf("unknown datacenter: %v", err)
	}
}

func TestGetRawAtBlocks(t *testing.T) {
	srv := servertest.Start(t)
	kv, err := client.NewKV(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A missing key answers not found, with the index to block from.
	_, found, idx, err := kv.GetRawAt(ctx, "block/k", 0, 0)
	if err != nil || found || idx == 0 {
		t.Fatalf("missing key: found %v, index %d, %v", found, idx, err)
	}
	if _, err := kv.Put(&consulapi.KVPair{Key: "block/k", Value: []byte("one")}, nil); err != nil {
		t.Fatal(err)
	}
	v, found, idx, err := kv.GetRawAt(ctx, "block/k", 0, 0)
	if err != nil || !found || string(v) != "one" || idx == 0 {
		t.Fatalf("GetRawAt = %q, %v, %d, %v", v, found, idx, err)
	}
	// Blocking at the current index: the wait runs out, same value and index.
	v, found, again, err := kv.GetRawAt(ctx, "block/k", idx, 20*time.Millisecond)
	if err != nil || !found || string(v) != "one" || again != idx {
		t.Fatalf("wait ran out: %q, %v, %d (was %d), %v", v, found, again, idx, err)
	}
	// Blocking at the current index: a write wakes it (or, if it lands
	// first, the query answers at once) with the new value.
	type answer struct {
		v   []byte
		idx uint64
		err error
	}
	got := make(chan answer, 1)
	go func() {
		v, _, i, err := kv.GetRawAt(ctx, "block/k", idx, time.Minute)
		got <- answer{v, i, err}
	}()
	if _, err := kv.Put(&consulapi.KVPair{Key: "block/k", Value: []byte("two")}, nil); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil || string(a.v) != "two" || a.idx <= idx {
		t.Fatalf("after a write: %q, index %d (was %d), %v", a.v, a.idx, idx, a.err)
	}
}

func TestGetKeys(t *testing.T) {
	srv := servertest.Start(t)
	kv, err := client.NewKV(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := []string{"gk/b", "gk/missing", `gk/"quoted"\back`, "gk/ünï"}
	for i, k := range keys {
		if k == "gk/missing" {
			continue
		}
		if _, err := kv.Put(&consulapi.KVPair{Key: k, Value: []byte(k + "\x00\xff"), Flags: uint64(i + 1)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	pairs, err := kv.GetKeys(ctx, keys)
	if err != nil || len(pairs) != len(keys) {
		t.Fatalf("GetKeys: %d pairs, %v", len(pairs), err)
	}
	for i, k := range keys {
		p := pairs[i]
		if k == "gk/missing" {
			if p != nil {
				t.Fatalf("missing key came back as %+v", p)
			}
			continue
		}
		if p == nil || p.Key != k || string(p.Value) != k+"\x00\xff" || p.Flags != uint64(i+1) || p.ModifyIndex == 0 {
			t.Fatalf("key %d (%q): %+v", i, k, p)
		}
	}
	bad, _ := client.NewKV(client.Options{Address: srv.HTTPAddr(), Datacenter: "nowhere"})
	if _, err := bad.GetKeys(ctx, keys); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("unknown datacenter: %v", err)
	}
}
