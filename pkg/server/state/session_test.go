package state

import (
	"bytes"
	"testing"
	"time"
)

func TestSessionsAndEventsSnapshotRoundTrip(t *testing.T) {
	s := New()
	register(t, s, 1, &Registration{Node: Node{Node: "n1", Address: "10.0.0.1"},
		Checks: []*Check{{CheckID: "serfHealth", Status: HealthPassing}}})
	w := s.Write()
	w.At(2)
	if err := w.SessionCreate(&Session{ID: "s1", Node: "n1", Behavior: BehaviorRelease, NodeChecks: []string{"serfHealth"}, LockDelay: time.Second}); err != nil {
		t.Fatal(err)
	}
	w.Commit()
	w = s.Write()
	w.At(3)
	if ok, err := w.Apply(&Op{Verb: VerbLock, Key: "k", Session: "s1"}); !ok || err != nil {
		t.Fatalf("lock = %v, %v", ok, err)
	}
	w.FireEvent(&Event{ID: "e1", Name: "deploy"})
	w.Commit()
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	fresh := New()
	if err := fresh.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	idx, sess := fresh.Read().SessionGet(nil, "s1")
	if idx != 2 || sess == nil || sess.LockDelay != time.Second || sess.NodeChecks[0] != "serfHealth" {
		t.Fatalf("restored session = %d, %+v", idx, sess)
	}
	if ev := fresh.Read().Events(nil); len(ev) != 1 || ev[0].ID != "e1" || ev[0].LTime != 2 {
		t.Fatalf("restored events = %+v", ev)
	}
	// The restored key is still held: destroying the session releases it.
	w = fresh.Write()
	w.At(4)
	w.SessionDestroy("s1")
	w.Commit()
	if _, e := fresh.Read().KVGet(nil, "k"); e == nil || e.Session != "" || e.ModifyIndex != 4 {
		t.Fatalf("key after destroying the restored session = %+v", e)
	}
	if fresh.LockDelay("k").IsZero() {
		t.Fatal("no lock delay after the invalidation")
	}
}
