package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// The servers' own entries in the catalog, kept by the leader as Consul's
// does: each server of the Raft configuration is a node with a passing
// serfHealth check and the consul service on its Raft port (Prometheus and
// consul-template find the servers that way; sessions default to
// serfHealth). As in Consul it takes two writes for a new server: the
// member's registration (node, check, service), then the node's own
// information, its tagged addresses and meta, which in Consul the node's
// agent syncs.

const (
	serfCheckID     = "serfHealth"
	serfCheckName   = "Serf Health Status"
	serfCheckOutput = "Agent alive and reachable"
	consulService   = "consul"
	// catalogReconcileInterval is how often the leader checks that every
	// server is in the catalog; it writes only when one is missing or stale.
	catalogReconcileInterval = 2 * time.Second
)

// nodeUUID is a server's node ID: stable for a name, and shaped as Consul's.
func nodeUUID(name string) string {
	h := sha256.Sum256([]byte("kvx-node-id:" + name))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// serverRegistrations returns the two registrations of a server: the member
// and its node information.
func (s *Server) serverRegistrations(name, raftAddr string) (member, info *state.Registration, err error) {
	host, portStr, err := net.SplitHostPort(raftAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("server %s address %q: %w", name, raftAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, fmt.Errorf("server %s address %q: %w", name, raftAddr, err)
	}
	node := state.Node{ID: nodeUUID(name), Node: name, Address: host}
	member = &state.Registration{
		Node:           node,
		SkipNodeUpdate: true, // a node that exists keeps its information
		Service:        &state.Service{ID: consulService, Service: consulService, Port: port, Weights: defaultWeigh},
		Checks:         []*state.Check{{CheckID: serfCheckID, Name: serfCheckName, Status: state.HealthPassing, Output: serfCheckOutput}},
	}
	node.TaggedAddresses = map[string]string{"lan": host, "lan_ipv4": host, "wan": host, "wan_ipv4": host}
	node.Meta = map[string]string{"consul-network-segment": "", "consul-version": s.opts.Version}
	return member, &state.Registration{Node: node}, nil
}

// registered reports whether the catalog already holds what r would write.
func registered(rt *state.ReadTxn, r *state.Registration) bool {
	_, n, services := rt.NodeServices(nil, r.Node.Node)
	if n == nil || n.ID != r.Node.ID || n.Address != r.Node.Address {
		return false
	}
	if r.Service == nil { // the node's information
		return fmt.Sprint(n.TaggedAddresses) == fmt.Sprint(r.Node.TaggedAddresses) && fmt.Sprint(n.Meta) == fmt.Sprint(r.Node.Meta)
	}
	found := false
	for _, sv := range services {
		found = found || (sv.ID == r.Service.ID && sv.Port == r.Service.Port)
	}
	_, checks := rt.NodeChecks(nil, r.Node.Node)
	for _, c := range checks {
		if c.CheckID == serfCheckID {
			return found && c.Status == state.HealthPassing
		}
	}
	return false
}

// reconcileCatalog registers, on the leader, every server missing from the
// catalog: at once when this node becomes a ready leader, then every
// catalogReconcileInterval.
func (s *Server) reconcileCatalog(leaderReady <-chan struct{}) {
	t := time.NewTicker(catalogReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-s.shutdown:
			return
		case <-leaderReady:
		case <-t.C:
		}
		if !s.ready.Load() || s.raft.State() != raft.Leader {
			continue
		}
		if err := s.registerServers(); err != nil && !s.stopping() {
			s.logger.Warn("register servers in the catalog", "err", err)
		}
	}
}

// stopping reports whether the server is shutting down: a write that fails
// then (leadership lost, Raft shut down) is expected, not a fault.
func (s *Server) stopping() bool {
	select {
	case <-s.shutdown:
		return true
	default:
		return false
	}
}

func (s *Server) registerServers() error {
	servers, _, err := s.raftConfiguration()
	if err != nil {
		return err
	}
	for _, srv := range servers {
		member, info, err := s.serverRegistrations(string(srv.ID), string(srv.Address))
		if err != nil {
			return err
		}
		for _, r := range []*state.Registration{member, info} {
			if registered(s.store.Read(), r) {
				continue
			}
			cmd, err := encodeRegister(r)
			if err != nil {
				return err
			}
			if _, err := s.apply(cmd); err != nil {
				return fmt.Errorf("register server %s: %w", srv.ID, err)
			}
		}
	}
	return nil
}

// WaitForCatalog blocks until this server's own node is in its copy of the
// catalog, registered and synced: from then on it answers catalog reads as a
// Consul server that has joined does.
func (s *Server) WaitForCatalog(ctx context.Context) error {
	if err := s.WaitForLeader(ctx); err != nil {
		return err
	}
	member, info, err := s.serverRegistrations(s.opts.NodeName, s.RaftAddr())
	if err != nil {
		return err
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		rt := s.store.Read()
		if registered(rt, member) && registered(rt, info) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for catalog: %w", ctx.Err())
		case <-s.shutdown:
			return errors.New("wait for catalog: server shut down")
		case <-t.C:
		}
	}
}
