package server

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// sessionTimers are the leader's TTL timers: a session with a TTL that is not
// renewed for sessionTTLMultiplier times its TTL is destroyed through Raft.
// They live in the leader's memory only; a new leader rebuilds them from the
// state, giving every session a full period (rebuild), as Consul.
type sessionTimers struct {
	mu     sync.Mutex
	timers map[string]*time.Timer
}

// reset (re)starts a session's timer.
func (t *sessionTimers) reset(s *Server, id string, ttl time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timers == nil {
		t.timers = map[string]*time.Timer{}
	}
	if old := t.timers[id]; old != nil {
		old.Stop()
	}
	t.timers[id] = time.AfterFunc(ttl*sessionTTLMultiplier, func() { s.expireSession(id) })
}

func (t *sessionTimers) clear(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.timers[id]; old != nil {
		old.Stop()
		delete(t.timers, id)
	}
}

// clearAll stops every timer: this node is no longer the leader.
func (t *sessionTimers) clearAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, old := range t.timers {
		old.Stop()
		delete(t.timers, id)
	}
}

// rebuildSessionTimers starts a timer for every session with a TTL: this
// node just became a ready leader.
func (s *Server) rebuildSessionTimers() {
	s.sessionTimers.clearAll()
	_, all := s.store.Read().Sessions(nil)
	for _, sess := range all {
		if ttl := sessionTTL(sess); ttl > 0 {
			s.sessionTimers.reset(s, sess.ID, ttl)
		}
	}
}

// expireSession destroys a session whose TTL ran out, if this node still
// leads; it tries again later if the write fails while it does.
func (s *Server) expireSession(id string) {
	if s.stopping() || s.raft.State() != raft.Leader {
		return
	}
	s.logger.Info("session expired", "session", id)
	if err := s.destroySession(id); err != nil {
		if s.stopping() || s.raft.State() != raft.Leader {
			return
		}
		s.logger.Warn("destroy expired session", "session", id, "err", err)
		s.sessionTimers.mu.Lock()
		defer s.sessionTimers.mu.Unlock()
		if s.sessionTimers.timers == nil {
			s.sessionTimers.timers = map[string]*time.Timer{}
		}
		s.sessionTimers.timers[id] = time.AfterFunc(time.Second, func() { s.expireSession(id) })
	}
}
