package local

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// SyncNow waits for a sync that started after every change made so far,
// and returns its error.
func (s *State) SyncNow(ctx context.Context) error {
	want := s.gen.Load()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	for {
		s.roundMu.Lock()
		if s.lastGen >= want && s.syncs.Load() > 0 {
			err := s.lastErr
			s.roundMu.Unlock()
			return err
		}
		done := s.roundDone
		s.roundMu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
		}
	}
}

// jitter returns d ± 25%.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// syncLoop syncs at start, on changes, on the jittered interval, and
// retries a failed sync with a backoff.
func (s *State) syncLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-timer.C:
		}
		gen := s.gen.Load()
		err := s.sync(ctx)
		s.syncs.Add(1)
		s.roundMu.Lock()
		s.lastGen, s.lastErr = gen, err
		close(s.roundDone)
		s.roundDone = make(chan struct{})
		s.roundMu.Unlock()
		next := jitter(s.opts.SyncInterval)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, time.Second), s.opts.SyncInterval)
			next = backoff
			level := slog.LevelDebug // a start before the leader is elected
			if backoff >= 4*time.Second {
				level = slog.LevelWarn
			}
			s.log.Log(ctx, level, "sync with the catalog failed", "err", err, "retry_in", next)
		} else {
			backoff = 0
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// sync makes the catalog's copy of the node equal to the local state,
// writing only the differences.
func (s *State) sync(ctx context.Context) error {
	cat, name := s.opts.Catalog, s.opts.Node.Node
	node, rsvcs, rchecks, err := cat.NodeState(ctx, name)
	if err != nil {
		return err
	}
	want := s.opts.Node
	switch {
	case s.opts.ManageNode && (node == nil || !node.same(&want)):
		if err := s.write(cat.Register(ctx, &Registration{Node: want})); err != nil {
			return err
		}
	}
	// Without ManageNode, a missing node is created bare by the first
	// write below; its owner fills it in.
	ref := Node{ID: want.ID, Node: name}
	svcs, checks := s.Services(), s.Checks()

	remoteSvc := make(map[string]*Service, len(rsvcs))
	for i := range rsvcs {
		remoteSvc[rsvcs[i].ID] = &rsvcs[i]
	}
	remoteChk := make(map[string]*Check, len(rchecks))
	for i := range rchecks {
		remoteChk[rchecks[i].CheckID] = &rchecks[i]
	}
	localSvc := make(map[string]bool, len(svcs))
	written := map[string]bool{}
	for i := range svcs {
		sv := &svcs[i]
		localSvc[sv.ID] = true
		if r := remoteSvc[sv.ID]; r != nil && r.same(sv) {
			continue
		}
		reg := &Registration{Node: ref, SkipNodeUpdate: true, Service: sv}
		for _, c := range checks {
			if c.ServiceID == sv.ID {
				reg.Checks = append(reg.Checks, c)
				written[c.CheckID] = true
			}
		}
		if err := s.write(cat.Register(ctx, reg)); err != nil {
			return err
		}
	}
	for id := range remoteSvc {
		if !localSvc[id] && id != ConsulServiceID {
			if err := s.write(cat.Deregister(ctx, name, id, "")); err != nil {
				return err
			}
		}
	}
	localChk := make(map[string]bool, len(checks))
	var changed []Check
	for _, c := range checks {
		localChk[c.CheckID] = true
		if r := remoteChk[c.CheckID]; written[c.CheckID] || (r != nil && r.same(&c)) {
			continue
		}
		changed = append(changed, c)
	}
	if len(changed) > 0 {
		if err := s.write(cat.Register(ctx, &Registration{Node: ref, SkipNodeUpdate: true, Checks: changed})); err != nil {
			return err
		}
	}
	for id, c := range remoteChk {
		if localChk[id] || id == SerfCheckID || (c.ServiceID != "" && !localSvc[c.ServiceID]) {
			continue // a check of a removed service went with it
		}
		if err := s.write(cat.Deregister(ctx, name, "", id)); err != nil {
			return err
		}
	}
	return nil
}

func (s *State) write(err error) error {
	if err == nil {
		s.writes.Add(1)
	}
	return err
}

// Leave deregisters the node from the catalog, with everything on it.
func (s *State) Leave(ctx context.Context) error {
	return s.opts.Catalog.Deregister(ctx, s.opts.Node.Node, "", "")
}
