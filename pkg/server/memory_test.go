package server

import (
	"os"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func gcMetric(t *testing.T, name string) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func TestGCMinHeapKeepsTheGoalAtTheFloor(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		before := gcMetric(t, "/gc/gogc:percent")
		SetGCMinHeap(256 << 20)
		if got := gcMetric(t, "/gc/gogc:percent"); got != before {
			t.Fatalf("GOGC is set in the environment, yet the floor changed GOGC from %d to %d", before, got)
		}
		return
	}
	const floor = 256 << 20
	SetGCMinHeap(floor)
	defer SetGCMinHeap(0)
	// The floor holds after collections too: each one retunes from the
	// live heap it found.
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		goal := gcMetric(t, "/gc/heap/goal:bytes")
		if goal > floor*9/10 && goal <= floor {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heap goal %d MiB after collections with a %d MiB floor (GOGC %d)", goal>>20, floor>>20, gcMetric(t, "/gc/gogc:percent"))
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	SetGCMinHeap(0)
	if got := gcMetric(t, "/gc/gogc:percent"); got != 100 {
		t.Fatalf("GOGC %d after the floor is turned off, want Go's 100", got)
	}
}
