package httpd

import "time"

// Timeouts without a deadline per request: a connection records when it
// entered its state (an atomic store), and one goroutine per server sweeps
// the connections a few times per timeout, closing the ones idle past
// IdleTimeout and the ones whose request headers have not arrived within
// ReadHeaderTimeout. A read deadline is a runtime timer operation; two per
// request (set when idle, cleared when a request starts) cost more than
// this. A timeout fires up to an eighth of it late (at most a second). The
// same sweep, at least once a second, looks for the clients that went away
// while their request waits in its handler (alive.go).

var epoch = time.Now()

// now is a monotonic clock in nanoseconds.
func now() int64 { return int64(time.Since(epoch)) }

func (s *Server) sweepEvery() time.Duration {
	d := aliveEvery // alive.go: requests whose client may have gone
	for _, t := range []time.Duration{s.IdleTimeout, s.ReadHeaderTimeout} {
		if t > 0 {
			d = min(d, max(t/8, time.Millisecond))
		}
	}
	return d
}

// startSweeper runs the sweeper once per server (s.mu held).
func (s *Server) startSweeperLocked() {
	every := s.sweepEvery()
	if s.sweepStop != nil {
		return
	}
	s.sweepStop = make(chan struct{})
	go s.sweep(every, s.sweepStop)
}

func (s *Server) sweep(every time.Duration, stop chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	var expired, waiting []*conn
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		n := now()
		idle, header := int64(s.IdleTimeout), int64(s.ReadHeaderTimeout)
		s.mu.Lock()
		if s.inShutdown.Load() && len(s.conns) == 0 {
			s.mu.Unlock()
			return
		}
		for c := range s.conns {
			age := n - c.since.Load()
			switch st := c.state.Load(); {
			case st == stateIdle && idle > 0 && age > idle,
				(st == stateNew || st == stateHeader) && header > 0 && age > header:
				if c.state.CompareAndSwap(st, stateClosed) {
					expired = append(expired, c)
				}
			case st == stateActive && c.waiting.Load() && age > c.peekAt.Load():
				c.peekAt.Store(nextPeekAge(age))
				waiting = append(waiting, c)
			}
		}
		s.mu.Unlock()
		for i, c := range waiting {
			s.aliveChecks.Add(1)
			if c.gone() {
				c.cancelRequest()
			}
			waiting[i] = nil
		}
		waiting = waiting[:0]
		for i, c := range expired {
			c.rwc.Close()
			expired[i] = nil
		}
		expired = expired[:0]
	}
}
