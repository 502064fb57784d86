package server

import (
	"errors"
	"net/http"
	"net/http/httputil"
	"time"

	"github.com/hashicorp/raft"
)

// headerForwarded marks a request one server forwarded to another, so that a
// request never travels in a loop while leadership moves.
const headerForwarded = "X-Kvx-Forwarded"

// leaderHold is how long a request waits for a leader to be elected before
// it gives up, as Consul's rpc_hold_timeout.
const leaderHold = 7 * time.Second

// leaderAddr waits up to leaderHold for a known leader.
func (s *Server) leaderAddr(r *http.Request) (string, error) {
	deadline := time.Now().Add(leaderHold)
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return string(addr), nil
		}
		if time.Now().After(deadline) {
			return "", errNoLeader
		}
		select {
		case <-r.Context().Done():
			return "", r.Context().Err()
		case <-s.shutdown:
			return "", errNoLeader
		case <-time.After(10 * time.Millisecond):
		}
	}
}

var errNoLeader = &httpError{code: http.StatusInternalServerError, msg: "No cluster leader"}

// monitorLeadership keeps s.ready: a new leader's state may lag the log it
// inherited (hashicorp/raft does not persist the commit index, so after a
// restart the tail of the log is applied only once the leader commits in its
// own term). A barrier flushes it; until then the leader does not answer reads.
func (s *Server) monitorLeadership(notify <-chan bool) {
	for {
		select {
		case <-s.shutdown:
			return
		case isLeader := <-notify:
			s.ready.Store(false)
			if !isLeader {
				s.sessionTimers.clearAll()
				continue
			}
			if err := s.barrier(); err != nil {
				if !errors.Is(err, raft.ErrRaftShutdown) {
					s.logger.Warn("leader barrier", "err", err)
				}
				continue
			}
			s.rebuildSessionTimers()
			s.ready.Store(true)
			select {
			case s.catalogKick <- struct{}{}:
			default:
			}
			s.logger.Info("leader ready", "node", s.opts.NodeName, "index", s.raft.AppliedIndex())
		}
	}
}

// barrier waits for a Raft barrier, or for the server to shut down.
func (s *Server) barrier() error {
	select {
	case <-s.shutdown:
		return raft.ErrRaftShutdown
	default:
	}
	return s.await(s.raft.Barrier(0))
}

// await waits for a Raft future, or for Raft to have shut down. With
// BatchApplyCh, raft's apply channel is buffered, so a future issued as
// raft shuts down can be queued where no loop will ever answer it, and its
// Error() blocks forever (this hung Close in the soak test). Writes in
// flight when a stop begins still complete: Raft shuts down only after the
// HTTP servers have drained. The goroutine waiting on the future ends with
// it, or, in that case only, stays blocked on a future a shut-down raft
// never answers.
func (s *Server) await(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-s.raftDown:
		return raft.ErrRaftShutdown
	}
}

// waitReady holds a read on the leader until its state has caught up with
// its log, for up to leaderHold.
func (s *Server) waitReady(r *http.Request) error {
	deadline := time.Now().Add(leaderHold)
	for !s.ready.Load() {
		if s.raft.State() != raft.Leader || time.Now().After(deadline) {
			return &httpError{code: http.StatusInternalServerError, msg: "Not ready to serve consistent reads"}
		}
		select {
		case <-r.Context().Done():
			return r.Context().Err()
		case <-s.shutdown:
			return errNoLeader
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// forward proxies the request to the leader over the mux port.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(headerForwarded) != "" {
		s.writeError(w, errNoLeader)
		return
	}
	addr, err := s.leaderAddr(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if addr == s.RaftAddr() { // we became the leader while waiting
		r.Header.Set(headerForwarded, s.opts.NodeName)
		s.httpSrv.Handler.ServeHTTP(w, r)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = addr
			pr.Out.Header.Set(headerForwarded, s.opts.NodeName)
		},
		Transport:     s.forwarder.Transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.writeError(w, &httpError{code: http.StatusInternalServerError, msg: "forward to leader " + addr + ": " + err.Error()})
		},
	}
	rp.ServeHTTP(w, r)
}

// apply commits a command through Raft and returns the FSM's response.
func (s *Server) apply(cmd []byte) (any, error) {
	defer s.tel.m.MeasureSince([]string{"kvs", "apply"}, time.Now())
	f := s.raft.Apply(cmd, 0)
	if err := s.await(f); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, &httpError{code: http.StatusInternalServerError, msg: "leadership lost while committing: " + err.Error()}
		}
		return nil, err
	}
	if err, ok := f.Response().(error); ok {
		return nil, err
	}
	return f.Response(), nil
}

// tombstoneGC reaps, through Raft, tombstones older than the TTL. Only the
// leader does it; it remembers which index was applied when, so that
// "older than the TTL" is a Raft index every node agrees on.
func (s *Server) tombstoneGC() {
	type mark struct {
		at    time.Time
		index uint64
	}
	var marks []mark
	tick := s.opts.TombstoneTTL / 15
	if tick < 10*time.Millisecond {
		tick = 10 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.shutdown:
			return
		case <-t.C:
		}
		if s.raft.State() != raft.Leader {
			marks = marks[:0]
			continue
		}
		now := time.Now()
		marks = append(marks, mark{at: now, index: s.raft.AppliedIndex()})
		var cut uint64
		for len(marks) > 0 && now.Sub(marks[0].at) >= s.opts.TombstoneTTL {
			cut = marks[0].index
			marks = marks[1:]
		}
		if cut == 0 || !s.hasTombstonesAtOrBelow(cut) {
			continue
		}
		if _, err := s.apply(encodeReap(cut)); err != nil {
			s.logger.Warn("reap tombstones", "index", cut, "err", err)
		}
	}
}

func (s *Server) hasTombstonesAtOrBelow(index uint64) bool {
	for _, t := range s.store.Read().Tombstones() {
		if t.Index <= index {
			return true
		}
	}
	return false
}

// reportStats publishes, every second, the figures nobody else reports on a
// schedule: how long since this node heard from the leader, and how many
// blocking queries are waiting, and the HTTP requests counted since.
func (s *Server) reportStats() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.shutdown:
			return
		case <-t.C:
		}
		s.tel.m.SetGauge([]string{"raft", "lastContact"}, float32(s.lastContactMS()))
		s.tel.m.SetGauge([]string{"rpc", "queries_blocking"}, float32(s.blocking.Load()))
		s.flushHTTPStats()
	}
}
