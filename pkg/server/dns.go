package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/kvxproject/kvx/pkg/acl"
	kvxdns "github.com/kvxproject/kvx/pkg/dns"
	"github.com/kvxproject/kvx/pkg/server/state"
)

// The DNS interface (pkg/dns) of a server reads the catalog straight from
// the in-memory state store: no Raft round, no HTTP.

// dnsServer is the DNS server a Server runs (its field is declared with
// this name so that server.go need not import pkg/dns).
type dnsServer = kvxdns.Server

// startDNS serves DNS when the options ask for it.
func (s *Server) startDNS() error {
	if s.opts.DNS == nil {
		return nil
	}
	cfg := *s.opts.DNS
	cfg.Datacenter = s.opts.Datacenter
	d, err := kvxdns.New(cfg, dnsCatalog{s: s, cache: newDNSCache()}, s.logger)
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

// dnsCatalog is the server's kvxdns.Catalog. It keeps each service's
// instances, converted, until the state store says they changed: the
// watch channels of the service's own index entry (which every change to
// its instances, their nodes or their checks moves) and the store's abandon
// channel. A query on a warm service costs a few channel polls.
type dnsCatalog struct {
	s     *Server
	cache *dnsCache
}

// dnsCacheMax bounds the services kept; a full cache starts over.
const dnsCacheMax = 4096

type dnsCache struct {
	mu       sync.RWMutex
	services map[string]*dnsCached
	nodes    *dnsCached
}

type dnsCached struct {
	watch []<-chan struct{} // closed when the data may have changed
	data  any               // []kvxdns.Instance or []kvxdns.Node
}

func newDNSCache() *dnsCache { return &dnsCache{services: map[string]*dnsCached{}} }

// fresh reports whether no watch channel of c has closed.
func (c *dnsCached) fresh() bool {
	for _, ch := range c.watch {
		select {
		case <-ch:
			return false
		default:
		}
	}
	return true
}

func watchList(ws memdb.WatchSet, abandon <-chan struct{}) []<-chan struct{} {
	out := make([]<-chan struct{}, 0, len(ws)+1)
	for ch := range ws {
		out = append(out, ch)
	}
	return append(out, abandon)
}

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
	key := strings.ToLower(service)
	c.cache.mu.RLock()
	e := c.cache.services[key]
	c.cache.mu.RUnlock()
	if e != nil && e.fresh() {
		return c.readable(service, e.data.([]kvxdns.Instance))
	}
	rt := c.s.store.Read()
	ws := memdb.NewWatchSet()
	_, hs := rt.ServiceHealth(ws, service)
	out := toDNSInstances(hs)
	c.cache.mu.Lock()
	if len(c.cache.services) >= dnsCacheMax {
		clear(c.cache.services)
	}
	c.cache.services[key] = &dnsCached{watch: watchList(ws, rt.AbandonCh()), data: out}
	c.cache.mu.Unlock()
	return c.readable(service, out)
}

// authorizer is what DNS answers follow with ACLs on: the server's agent
// token (-acl-agent-token), else the anonymous token's, as Consul's DNS;
// nil when ACLs are off.
func (c dnsCatalog) authorizer() (*acl.Authorizer, error) {
	if !c.s.opts.ACL.Enabled {
		return nil, nil
	}
	return c.s.AuthorizerFor("")
}

// readable keeps the instances DNS may answer: none when the token cannot
// read the service, and only those on nodes it can read (a new slice: the
// cached one is shared).
func (c dnsCatalog) readable(service string, in []kvxdns.Instance) ([]kvxdns.Instance, error) {
	a, err := c.authorizer()
	if err != nil || a == nil {
		return in, err
	}
	if !a.ServiceRead(service) {
		return nil, nil
	}
	out := make([]kvxdns.Instance, 0, len(in))
	for _, i := range in {
		if a.NodeRead(i.Node) {
			out = append(out, i)
		}
	}
	return out, nil
}

func toDNSInstances(hs []state.HealthInstance) []kvxdns.Instance {
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
	return out
}

func (c dnsCatalog) Node(_ context.Context, name string) (*kvxdns.Node, error) {
	if err := c.fresh(); err != nil {
		return nil, err
	}
	n := c.s.store.Read().Node(name)
	if n == nil {
		return nil, nil
	}
	if a, err := c.authorizer(); err != nil || (a != nil && !a.NodeRead(n.Node)) {
		return nil, err
	}
	return &kvxdns.Node{Name: n.Node, Address: n.Address, Meta: n.Meta}, nil
}

func (c dnsCatalog) Nodes(_ context.Context) ([]kvxdns.Node, error) {
	if err := c.fresh(); err != nil {
		return nil, err
	}
	c.cache.mu.RLock()
	e := c.cache.nodes
	c.cache.mu.RUnlock()
	if e != nil && e.fresh() {
		return c.readableNodes(e.data.([]kvxdns.Node))
	}
	rt := c.s.store.Read()
	ws := memdb.NewWatchSet()
	_, nodes := rt.Nodes(ws)
	out := make([]kvxdns.Node, len(nodes))
	for i, n := range nodes {
		out[i] = kvxdns.Node{Name: n.Node, Address: n.Address, Meta: n.Meta}
	}
	c.cache.mu.Lock()
	c.cache.nodes = &dnsCached{watch: watchList(ws, rt.AbandonCh()), data: out}
	c.cache.mu.Unlock()
	return c.readableNodes(out)
}

// readableNodes keeps the nodes the token can read (a new slice).
func (c dnsCatalog) readableNodes(in []kvxdns.Node) ([]kvxdns.Node, error) {
	a, err := c.authorizer()
	if err != nil || a == nil {
		return in, err
	}
	out := make([]kvxdns.Node, 0, len(in))
	for _, n := range in {
		if a.NodeRead(n.Name) {
			out = append(out, n)
		}
	}
	return out, nil
}
