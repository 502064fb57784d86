package server

import (
	"runtime/debug"
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
