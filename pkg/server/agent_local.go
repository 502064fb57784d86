package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/kvxproject/kvx/pkg/agent/local"
	"github.com/kvxproject/kvx/pkg/server/state"
)

// Every kvx server is the agent of its own node: the services and checks
// registered through /v1/agent/* on it are a local.State, the same agent
// state and handlers `kvx agent` uses, whose catalog is this server's (read
// from its store, written through Raft on the leader, forwarded from a
// follower). The leader registers the node itself (catalog_self.go).

// newLocalAgent makes the agent state of this server's node.
func (s *Server) newLocalAgent() *local.State {
	return local.New(local.Options{
		Node:       local.Node{Node: s.opts.NodeName},
		Datacenter: s.opts.Datacenter,
		Catalog:    serverCatalog{s},
		Logger:     s.logger.With("agent", s.opts.NodeName),
		Authorize: func(r *http.Request) (local.Authz, error) {
			a, err := s.authz(r)
			if err != nil {
				return nil, err
			}
			return a, nil
		},
	})
}

// runLocalAgent runs the node's checks and sync until shutdown.
func (s *Server) runLocalAgent() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-s.shutdown
		cancel()
	}()
	_ = s.agent.Run(ctx)
}

// AgentState returns the agent state of this server's node.
func (s *Server) AgentState() *local.State { return s.agent }

// serverCatalog is the catalog as the server's own agent reaches it.
type serverCatalog struct{ s *Server }

// nodeState is a node as the catalog holds it, sent by the leader to a
// follower's agent: a follower's own store may not have the latest writes,
// and a sync that read it would write again what is already there, or
// find no node at all.
type nodeState struct {
	Node     *local.Node
	Services []local.Service
	Checks   []local.Check
}

func (c serverCatalog) NodeState(_ context.Context, node string) (*local.Node, []local.Service, []local.Check, error) {
	if !c.s.IsLeader() {
		addr, _ := c.s.raft.LeaderWithID()
		if addr == "" {
			return nil, nil, nil, errNoLeader
		}
		var ns nodeState
		err := c.s.internalCall(string(addr), "/internal/v1/nodestate", node, &ns)
		return ns.Node, ns.Services, ns.Checks, err
	}
	ns := c.s.readNodeState(node)
	return ns.Node, ns.Services, ns.Checks, nil
}

// handleInternalNodeState answers a follower's agent's NodeState.
func (s *Server) handleInternalNodeState(w http.ResponseWriter, r *http.Request) {
	var node string
	if err := json.NewDecoder(r.Body).Decode(&node); err != nil {
		http.Error(w, "bad node state request", http.StatusBadRequest)
		return
	}
	if !s.IsLeader() {
		s.writeError(w, raft.ErrNotLeader)
		return
	}
	writeJSON(w, http.StatusOK, s.readNodeState(node))
}

func (s *Server) readNodeState(node string) nodeState {
	rt := s.store.Read()
	_, n, svcs := rt.NodeServices(nil, node)
	if n == nil {
		return nodeState{}
	}
	_, checks := rt.NodeChecks(nil, node)
	out := nodeState{Node: &local.Node{ID: n.ID, Node: n.Node, Address: n.Address, TaggedAddresses: n.TaggedAddresses, Meta: n.Meta}}
	for _, sv := range svcs {
		out.Services = append(out.Services, local.Service{ID: sv.ID, Service: sv.Service, Tags: sv.Tags, Address: sv.Address,
			Meta: sv.Meta, Port: sv.Port, Weights: local.Weights(sv.Weights), EnableTagOverride: sv.EnableTagOverride})
	}
	for _, ck := range checks {
		out.Checks = append(out.Checks, local.Check{CheckID: ck.CheckID, Name: ck.Name, Status: ck.Status, Notes: ck.Notes,
			Output: ck.Output, ServiceID: ck.ServiceID, ServiceName: ck.ServiceName, ServiceTags: ck.ServiceTags,
			Type: ck.Type, Interval: ck.Interval, Timeout: ck.Timeout})
	}
	return out
}

func (c serverCatalog) Register(_ context.Context, r *local.Registration) error {
	reg := &state.Registration{SkipNodeUpdate: r.SkipNodeUpdate, Node: state.Node{ID: r.Node.ID, Node: r.Node.Node,
		Address: r.Node.Address, TaggedAddresses: r.Node.TaggedAddresses, Meta: r.Node.Meta}}
	if sv := r.Service; sv != nil {
		reg.Service = &state.Service{ID: sv.ID, Service: sv.Service, Tags: sv.Tags, Address: sv.Address, Meta: sv.Meta,
			Port: sv.Port, Weights: state.Weights(sv.Weights), EnableTagOverride: sv.EnableTagOverride}
	}
	for _, ck := range r.Checks {
		reg.Checks = append(reg.Checks, &state.Check{CheckID: ck.CheckID, Name: ck.Name, Status: ck.Status, Notes: ck.Notes,
			Output: ck.Output, ServiceID: ck.ServiceID, Type: ck.Type, Interval: ck.Interval, Timeout: ck.Timeout})
	}
	return c.s.applyCatalogCommand(catalogCommand{Register: reg})
}

func (c serverCatalog) Deregister(_ context.Context, node, serviceID, checkID string) error {
	return c.s.applyCatalogCommand(catalogCommand{Deregister: &state.Deregistration{Node: node, ServiceID: serviceID, CheckID: checkID}})
}

// catalogCommand is a catalog write a follower's agent sends to the leader.
type catalogCommand struct {
	Register   *state.Registration   `json:",omitempty"`
	Deregister *state.Deregistration `json:",omitempty"`
}

// applyCatalogCommand commits a catalog write on the leader, from any server.
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

// handleAgentLocal serves the agent endpoints of the node's state.
func (s *Server) handleAgentLocal(w http.ResponseWriter, r *http.Request) error {
	s.agentHandler.ServeHTTP(w, r)
	return nil
}

// Members returns the cluster's members from this server's catalog: the
// servers (nodes with the consul service) and the agents (nodes with a
// serfHealth check), alive when serfHealth passes.
func (s *Server) Members() []local.Member {
	rt := s.store.Read()
	_, servers := rt.ServiceNodes(nil, consulService)
	port := map[string]int{}
	for _, in := range servers {
		port[strings.ToLower(in.Node.Node)] = in.Service.Port
	}
	_, checks := rt.ChecksInState(nil, state.HealthAny)
	var out []local.Member
	for _, c := range checks {
		if c.CheckID != serfCheckID {
			continue
		}
		n := rt.Node(c.Node)
		if n == nil {
			continue
		}
		p, isServer := port[strings.ToLower(n.Node)]
		out = append(out, local.Member{Name: n.Node, Addr: n.Address, Port: p, Server: isServer,
			Alive: c.Status == state.HealthPassing, Build: n.Meta["consul-version"], Datacenter: s.opts.Datacenter})
	}
	return out
}

func (s *Server) handleAgentMembers(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	if err := s.checkScope(r.URL.Query()); err != nil {
		return err
	}
	az, err := s.authz(r)
	if err != nil {
		return err
	}
	members, filtered := filterBy(s.Members(), func(m local.Member) bool { return az.NodeRead(m.Name) })
	if filtered {
		setFiltered(w)
	}
	local.WriteMembers(w, members)
	return nil
}
