package server

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	kvxdns "github.com/kvxproject/kvx/pkg/dns"
	"github.com/kvxproject/kvx/pkg/server/state"
)

// The DNS interface (pkg/dns) of a server reads the catalog straight from
// the in-memory state store: no Raft round, no HTTP.

// startDNS serves DNS when the options ask for it.
func (s *Server) startDNS() error {
	if s.opts.DNS == nil {
		return nil
	}
	cfg := *s.opts.DNS
	cfg.Datacenter = s.opts.Datacenter
	d, err := kvxdns.New(cfg, dnsCatalog{s}, s.logger)
	if err != nil && s.opts.DNSOptional && errors.Is(err, syscall.EADDRINUSE) {
		s.logger.Warn("dns address in use: serving without DNS (give -dns-addr to choose one)", "addr", cfg.Addr, "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	s.dns = d
	return nil
}

// DNSAddr is the bound DNS address (UDP and TCP), "" when DNS is off.
func (s *Server) DNSAddr() string {
	if s.dns == nil {
		return ""
	}
	return s.dns.Addr()
}

// dnsCatalog is the server's kvxdns.Catalog.
type dnsCatalog struct{ s *Server }

// fresh refuses, with -dns-allow-stale=false, to answer from a follower that
// has not heard from its leader lately or has not applied everything the
// leader said was committed.
func (c dnsCatalog) fresh() error {
	s := c.s
	if !s.opts.DNSNoStale || s.raft.State() == raft.Leader {
		return nil
	}
	if last := s.raft.LastContact(); last.IsZero() || time.Since(last) > 2*s.opts.HeartbeatTimeout {
		return fmt.Errorf("stale reads are off and this follower has no recent contact with a leader")
	}
	if s.raft.AppliedIndex() < s.raft.CommitIndex() {
		return fmt.Errorf("stale reads are off and this follower is behind its leader")
	}
	return nil
}

func (c dnsCatalog) ServiceInstances(_ context.Context, service string) ([]kvxdns.Instance, error) {
	if err := c.fresh(); err != nil {
		return nil, err
	}
	_, hs := c.s.store.Read().ServiceHealth(nil, service)
	out := make([]kvxdns.Instance, len(hs))
	for i, h := range hs {
		status := kvxdns.StatusPassing
		for _, ch := range h.Checks {
			if ch.Status != state.HealthPassing {
				status = kvxdns.WorstStatus(status, ch.Status)
			}
		}
		out[i] = kvxdns.Instance{
			Node: h.Node.Node, NodeAddress: h.Node.Address,
			ID: h.Service.ID, Service: h.Service.Service, Address: h.Service.Address, Port: h.Service.Port,
			Tags: h.Service.Tags, Status: status,
			WeightPassing: h.Service.Weights.Passing, WeightWarning: h.Service.Weights.Warning,
		}
	}
	return out, nil
}

func (c dnsCatalog) Node(_ context.Context, name string) (*kvxdns.Node, error) {
	if err := c.fresh(); err != nil {
		return nil, err
	}
	n := c.s.store.Read().Node(name)
	if n == nil {
		return nil, nil
	}
	return &kvxdns.Node{Name: n.Node, Address: n.Address, Meta: n.Meta}, nil
}

func (c dnsCatalog) Nodes(_ context.Context) ([]kvxdns.Node, error) {
	if err := c.fresh(); err != nil {
		return nil, err
	}
	_, nodes := c.s.store.Read().Nodes(nil)
	out := make([]kvxdns.Node, len(nodes))
	for i, n := range nodes {
		out[i] = kvxdns.Node{Name: n.Node, Address: n.Address, Meta: n.Meta}
	}
	return out, nil
}
