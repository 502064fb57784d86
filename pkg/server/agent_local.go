package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// Every kvx server is the agent of its own node: the services and checks
// registered through /v1/agent/* on it are kept here, the truth for its
// node, and written to the catalog through Raft (on the leader, forwarded
// from a follower) when they change and only then. TTL checks turn critical
// when their TTL runs out; the other kinds of check (HTTP, TCP, script) are
// kept and shown but not run by the server (pkg/agent runs them).

// localAgent is the agent state of the server's node.
type localAgent struct {
	mu       sync.Mutex
	services map[string]*state.Service
	checks   map[string]*localCheck
}

type localCheck struct {
	check state.Check
	ttl   time.Duration
	timer *time.Timer // for a TTL check: fires when the TTL runs out
}

func (a *localAgent) init() {
	if a.services == nil {
		a.services = map[string]*state.Service{}
		a.checks = map[string]*localCheck{}
	}
}

// errUnknownCheck and errUnknownService are Consul's 404s.
func errUnknownCheck(id string) error {
	return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id)}
}

func errUnknownService(id string) error {
	return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id)}
}

// catalogCommand is a catalog write a follower's agent sends to the leader.
type catalogCommand struct {
	Register   *state.Registration   `json:",omitempty"`
	Deregister *state.Deregistration `json:",omitempty"`
}

// applyCatalog commits a catalog write on the leader, from any server.
func (s *Server) applyCatalogCommand(c catalogCommand) error {
	if !s.IsLeader() {
		addr, _ := s.raft.LeaderWithID()
		if addr == "" {
			return errNoLeader
		}
		var ok bool
		return s.internalCall(string(addr), "/internal/v1/catalog", c, &ok)
	}
	var (
		cmd []byte
		err error
	)
	if c.Register != nil {
		cmd, err = encodeRegister(c.Register)
	} else {
		cmd, err = encodeDeregister(c.Deregister)
	}
	if err != nil {
		return err
	}
	_, err = s.apply(cmd)
	return err
}

// handleInternalCatalog applies a catalog write sent by a follower's agent.
func (s *Server) handleInternalCatalog(w http.ResponseWriter, r *http.Request) {
	var c catalogCommand
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil || (c.Register == nil) == (c.Deregister == nil) {
		http.Error(w, "bad catalog command", http.StatusBadRequest)
		return
	}
	if !s.IsLeader() {
		s.writeError(w, raft.ErrNotLeader)
		return
	}
	if err := s.applyCatalogCommand(c); err != nil {
		s.writeError(w, err)
		return
	}
	writeRawJSON(w, http.StatusOK, []byte("true"))
}

// syncCheck writes one local check to the catalog.
func (s *Server) syncCheck(c state.Check) error {
	return s.applyCatalogCommand(catalogCommand{Register: &state.Registration{
		Node: state.Node{Node: s.opts.NodeName}, SkipNodeUpdate: true, Checks: []*state.Check{&c}}})
}

// addLocal registers a service (nil for a check alone) and its checks.
func (s *Server) addLocal(sv *state.Service, checks []*localCheck) error {
	reg := &state.Registration{Node: state.Node{Node: s.opts.NodeName}, SkipNodeUpdate: true, Service: sv}
	for _, c := range checks {
		ck := c.check
		reg.Checks = append(reg.Checks, &ck)
	}
	if err := s.applyCatalogCommand(catalogCommand{Register: reg}); err != nil {
		return err
	}
	a := &s.agent
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	if sv != nil {
		a.services[sv.ID] = sv
	}
	for _, c := range checks {
		if old := a.checks[c.check.CheckID]; old != nil && old.timer != nil {
			old.timer.Stop()
		}
		a.checks[c.check.CheckID] = c
		s.armTTL(c)
	}
	return nil
}

// armTTL (re)starts a TTL check's timer; a.mu is held.
func (s *Server) armTTL(c *localCheck) {
	if c.ttl <= 0 {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	id := c.check.CheckID
	c.timer = time.AfterFunc(c.ttl, func() {
		if err := s.updateLocalCheck(id, state.HealthCritical, "TTL expired", false); err != nil && !s.stopping() {
			s.logger.Warn("ttl check expired", "check", id, "err", err)
		}
	})
}

// updateLocalCheck sets a check's status and output, writing the catalog
// only when one of them changed. rearm restarts a TTL check's timer.
func (s *Server) updateLocalCheck(id, status, output string, rearm bool) error {
	a := &s.agent
	a.mu.Lock()
	c := a.checks[id]
	if c == nil {
		a.mu.Unlock()
		return errUnknownCheck(id)
	}
	if rearm {
		s.armTTL(c)
	}
	changed := c.check.Status != status || c.check.Output != output
	c.check.Status, c.check.Output = status, output
	ck := c.check
	a.mu.Unlock()
	if !changed {
		return nil
	}
	return s.syncCheck(ck)
}

// removeLocal deregisters a local service (with its checks) or check.
func (s *Server) removeLocal(serviceID, checkID string) error {
	a := &s.agent
	a.mu.Lock()
	a.init()
	if serviceID != "" {
		if a.services[serviceID] == nil {
			a.mu.Unlock()
			return errUnknownService(serviceID)
		}
		delete(a.services, serviceID)
		for id, c := range a.checks {
			if c.check.ServiceID == serviceID {
				s.dropCheck(id, c)
			}
		}
	} else {
		c := a.checks[checkID]
		if c == nil {
			a.mu.Unlock()
			return errUnknownCheck(checkID)
		}
		s.dropCheck(checkID, c)
	}
	a.mu.Unlock()
	return s.applyCatalogCommand(catalogCommand{Deregister: &state.Deregistration{
		Node: s.opts.NodeName, ServiceID: serviceID, CheckID: checkID}})
}

// dropCheck forgets a check; a.mu is held.
func (s *Server) dropCheck(id string, c *localCheck) {
	if c.timer != nil {
		c.timer.Stop()
	}
	delete(s.agent.checks, id)
}

// localView returns copies of the local services and checks, in ID order.
func (s *Server) localView() ([]state.Service, []state.Check) {
	a := &s.agent
	a.mu.Lock()
	defer a.mu.Unlock()
	var svcs []state.Service
	for _, sv := range a.services {
		svcs = append(svcs, *sv)
	}
	var checks []state.Check
	for _, c := range a.checks {
		checks = append(checks, c.check)
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].ID < svcs[j].ID })
	sort.Slice(checks, func(i, j int) bool { return checks[i].CheckID < checks[j].CheckID })
	return svcs, checks
}

// stopLocalChecks stops every TTL timer, at shutdown.
func (s *Server) stopLocalChecks() {
	a := &s.agent
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.checks {
		if c.timer != nil {
			c.timer.Stop()
		}
	}
}
