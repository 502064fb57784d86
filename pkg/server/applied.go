package server

import (
	"sync/atomic"
	"time"
)

// applyClock remembers when this server applied its recent Raft indexes,
// so that a follow answer can say how long ago the change it carries was
// applied (X-Kvx-Index-Age, kv_follow.go). A fleet woken by one push then
// knows the push's moment and sends its next queries together, which the
// server takes as one burst instead of a trickle of lone requests. The FSM
// records an index before applying it, so a watcher woken by the apply
// finds it; a slot overwritten by a later index reads as unknown.
type applyClock struct {
	slots [4096]struct{ index, nanos atomic.Int64 }
}

func (c *applyClock) record(index uint64, at time.Time) {
	s := &c.slots[index%uint64(len(c.slots))]
	s.index.Store(0) // a reader between these stores sees no index, not a wrong time
	s.nanos.Store(at.UnixNano())
	s.index.Store(int64(index))
}

// age is how long ago index was applied here; ok is false when it is not
// among the recent ones.
func (c *applyClock) age(index uint64, now time.Time) (time.Duration, bool) {
	s := &c.slots[index%uint64(len(c.slots))]
	if s.index.Load() != int64(index) || index == 0 {
		return 0, false
	}
	at := s.nanos.Load()
	if s.index.Load() != int64(index) {
		return 0, false
	}
	return max(0, time.Duration(now.UnixNano()-at)), true
}
