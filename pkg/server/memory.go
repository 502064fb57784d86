package server

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// idleRelease is how long the server must have applied nothing and answered
// nothing before it gives the memory its last burst freed back to the
// kernel.
const idleRelease = 2 * time.Second

// releaseMemoryWhenIdle returns freed memory to the kernel once the server
// goes idle after a burst of work. Go keeps a heap of up to twice the live
// data between collections and returns the rest slowly, so after a burst of
// registrations a server idles at about twice what it holds; one collection
// and scavenge when it is idle (a few milliseconds for tens of megabytes of
// live data, once per burst) brings its resident set down to what it holds.
func (s *Server) releaseMemoryWhenIdle() {
	t := time.NewTicker(idleRelease / 2)
	defer t.Stop()
	var (
		lastApplied, lastRequests uint64
		quietTicks                int
		dirty                     bool
	)
	for {
		select {
		case <-s.shutdown:
			return
		case <-t.C:
		}
		applied, requests := s.raft.AppliedIndex(), uint64(s.requests.Load())
		if applied != lastApplied || requests != lastRequests {
			lastApplied, lastRequests = applied, requests
			quietTicks, dirty = 0, true
			continue
		}
		quietTicks++
		if dirty && quietTicks >= 2 {
			debug.FreeOSMemory()
			dirty = false
		}
	}
}

// The heap floor (SetGCMinHeap). Go collects each time the heap doubles its
// live data: a server that holds 20 MB collects every 20 MB allocated,
// scanning its live data and the stacks of every waiting request each time.
// With a thousand watchers woken per push that was a fifth of the server's
// CPU per delivery. Below the floor the collector waits for the heap to
// reach the floor instead; above it Go's own rule applies unchanged, and a
// GOMEMLIMIT still wins over both.
var gcFloor struct {
	mu     sync.Mutex
	floor  uint64 // bytes; 0: off
	base   int    // the GOGC percent to keep above the floor
	armed  bool   // a sentinel is waiting for the next collection
	sample []metrics.Sample
}

// SetGCMinHeap sets the heap size below which the garbage collector does
// not run, process-wide; 0 turns the floor off. It does nothing when the
// GOGC environment variable is set: the operator's choice stands.
func SetGCMinHeap(floor uint64) {
	if os.Getenv("GOGC") != "" {
		return
	}
	gcFloor.mu.Lock()
	defer gcFloor.mu.Unlock()
	if gcFloor.sample == nil {
		gcFloor.base = debug.SetGCPercent(100)
		debug.SetGCPercent(gcFloor.base)
		gcFloor.sample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	}
	if gcFloor.base < 0 {
		return // collection is off altogether
	}
	gcFloor.floor = floor
	retuneGCLocked()
	if floor > 0 && !gcFloor.armed {
		gcFloor.armed = true
		armGCSentinel()
	}
}

// gcSentinel is garbage at birth: its finalizer runs after each
// collection, retunes, and arms the next one.
type gcSentinel struct{ _ *byte } // a pointer: never a tiny allocation, whose finalizer may not run

func armGCSentinel() {
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
		gcFloor.mu.Lock()
		defer gcFloor.mu.Unlock()
		retuneGCLocked()
		if gcFloor.armed = gcFloor.floor > 0; gcFloor.armed {
			armGCSentinel()
		}
	})
}

// retuneGCLocked sets GOGC so that the next collection starts at the floor
// when the live heap is below it, and at base otherwise. The runtime's goal
// is live + (live + stacks + globals) * GOGC/100, and never below
// 4 MiB * GOGC/100 (its minimum heap, which GOGC scales too).
func retuneGCLocked() {
	pct := gcFloor.base
	if gcFloor.floor > 0 {
		metrics.Read(gcFloor.sample)
		live := gcFloor.sample[0].Value.Uint64()
		roots := live + gcFloor.sample[1].Value.Uint64() + gcFloor.sample[2].Value.Uint64()
		if live < gcFloor.floor && roots > 0 {
			want := (gcFloor.floor - live) * 100 / roots
			want = min(want, gcFloor.floor*100/(4<<20), 10000)
			pct = max(pct, int(want))
		}
	}
	debug.SetGCPercent(pct)
}
