package server

import (
	"testing"
	"time"
)

func TestApplyClock(t *testing.T) {
	var c applyClock
	t0 := time.Now()
	c.record(7, t0)
	if age, ok := c.age(7, t0.Add(40*time.Millisecond)); !ok || age != 40*time.Millisecond {
		t.Fatalf("age of 7 = %v, %v; want 40ms", age, ok)
	}
	if _, ok := c.age(8, t0); ok {
		t.Fatal("index 8 was never applied, yet has an age")
	}
	// A later index in the same slot: 7 is no longer known.
	c.record(7+uint64(len(c.slots)), t0.Add(time.Second))
	if _, ok := c.age(7, t0.Add(2*time.Second)); ok {
		t.Fatal("an overwritten index still has an age")
	}
	if age, ok := c.age(7+uint64(len(c.slots)), t0.Add(2*time.Second)); !ok || age != time.Second {
		t.Fatalf("age of the later index = %v, %v; want 1s", age, ok)
	}
	if _, ok := c.age(0, t0); ok {
		t.Fatal("index 0 has an age")
	}
}
