package server

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvxproject/kvx/pkg/server/state"

	"github.com/kvxproject/kvx/pkg/acl"
)

// Liveness without gossip, as Nomad's clients: every agent heartbeats to the
// servers (PUT /v1/kvx/heartbeat/:node, forwarded to the leader), the leader
// keeps the time of each node's last heartbeat in memory, with no Raft write
// per heartbeat, and when a node has been silent for Options.NodeTimeout it
// marks the node's serfHealth check critical through one Raft write, so its
// services leave ?passing answers; its next heartbeat makes it passing again
// (one more write). A new leader gives every node a fresh grace period. The
// servers' own nodes are not tracked: the leader registers them (see
// catalog_self.go).

const serfCheckFailedOutput = "Agent not live or unreachable"

// heartbeats is the leader's record of the agents' last heartbeats.
type heartbeats struct {
	mu   sync.Mutex
	last map[string]time.Time // by node name; empty off the leader
	term uint64               // the leadership they were recorded under
}

// heartbeatAnswer tells an agent how often to heartbeat.
type heartbeatAnswer struct {
	NodeTimeout string
	Interval    string // a third of the timeout: two may be lost
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed(r, "PUT")
	}
	node := strings.TrimPrefix(r.URL.Path, "/v1/kvx/heartbeat/")
	if node == "" {
		return badRequest("Missing node name")
	}
	if !s.IsLeader() {
		s.forward(w, r)
		return nil
	}
	if !s.ready.Load() {
		return errNoLeader
	}
	if err := s.need(r, func(a *acl.Authorizer) bool { return a.NodeWrite(node) }); err != nil {
		return err // an agent's own token (-acl-agent-token) writes its node
	}
	if s.store.Read().Node(node) == nil {
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("Unknown node %q: register it in the catalog first", node)}
	}
	s.beats.mu.Lock()
	if s.beats.last == nil {
		s.beats.last = map[string]time.Time{}
	}
	s.beats.last[strings.ToLower(node)] = time.Now()
	s.beats.mu.Unlock()
	// A node that was critical, or has no serfHealth yet, is alive again.
	if st, _ := serfStatus(s.store.Read(), node); st != state.HealthPassing {
		if err := s.setSerfHealth(node, state.HealthPassing, serfCheckOutput); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, heartbeatAnswer{NodeTimeout: s.opts.NodeTimeout.String(), Interval: (s.opts.NodeTimeout / 3).String()})
	return nil
}

// serfStatus returns a node's serfHealth status, "" without one.
func serfStatus(rt *state.ReadTxn, node string) (string, bool) {
	_, checks := rt.NodeChecks(nil, node)
	for _, c := range checks {
		if c.CheckID == serfCheckID {
			return c.Status, true
		}
	}
	return "", false
}

// setSerfHealth writes a node's serfHealth check: one Raft write.
func (s *Server) setSerfHealth(node, status, output string) error {
	reg := &state.Registration{Node: state.Node{Node: node}, SkipNodeUpdate: true, Checks: []*state.Check{
		{CheckID: serfCheckID, Name: serfCheckName, Status: status, Output: output}}}
	cmd, err := encodeRegister(reg)
	if err != nil {
		return err
	}
	_, err = s.apply(cmd)
	return err
}

// trackHeartbeats runs on every server and acts on the leader: it marks
// critical the agents whose heartbeats stopped.
func (s *Server) trackHeartbeats() {
	tick := max(s.opts.NodeTimeout/10, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.shutdown:
			return
		case <-t.C:
		}
		if s.raft.State() != raft.Leader || !s.ready.Load() {
			s.beats.mu.Lock()
			s.beats.last, s.beats.term = nil, 0
			s.beats.mu.Unlock()
			continue
		}
		for _, node := range s.silentNodes(time.Now()) {
			if err := s.setSerfHealth(node, state.HealthCritical, serfCheckFailedOutput); err != nil {
				if !s.stopping() {
					s.logger.Warn("mark node critical", "node", node, "err", err)
				}
				break
			}
			s.logger.Info("node missed its heartbeats", "node", node, "timeout", s.opts.NodeTimeout)
		}
	}
}

// silentNodes returns the agents' nodes whose serfHealth is passing and
// whose last heartbeat is older than the timeout. Under a new leadership
// every node that has a serfHealth check starts with a fresh grace period.
func (s *Server) silentNodes(now time.Time) []string {
	servers := map[string]bool{}
	if conf, _, err := s.raftConfiguration(); err == nil {
		for _, srv := range conf {
			servers[strings.ToLower(string(srv.ID))] = true
		}
	}
	rt := s.store.Read()
	_, checks := rt.ChecksInState(nil, state.HealthAny)
	term := s.raft.CurrentTerm()
	s.beats.mu.Lock()
	defer s.beats.mu.Unlock()
	if s.beats.last == nil || s.beats.term != term {
		s.beats.last, s.beats.term = map[string]time.Time{}, term
	}
	var out []string
	for _, c := range checks {
		key := strings.ToLower(c.Node)
		if c.CheckID != serfCheckID || servers[key] {
			continue
		}
		last, ok := s.beats.last[key]
		if !ok {
			s.beats.last[key] = now // a fresh grace period
			continue
		}
		if c.Status == state.HealthPassing && now.Sub(last) > s.opts.NodeTimeout {
			out = append(out, c.Node)
		}
	}
	return out
}
