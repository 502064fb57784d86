package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/agent/local"
	"github.com/kvxproject/kvx/pkg/client"
)

// servers are the servers an agent talks to, by HTTP address, with the
// index of the last one that answered.
type servers struct {
	addrs      []string // as given, maybe with a scheme
	hosts      []string // host:port of each
	schemes    []string // http or https, for the forwarding proxy
	proxyTLS   *tls.Config
	clients    []*consulapi.Client
	transports []*http.Transport
	cur        atomic.Int64
}

// closeIdle closes the clients' idle connections, when the agent stops.
func (s *servers) closeIdle() {
	for _, t := range s.transports {
		t.CloseIdleConnections()
	}
}

func newServers(addrs []string, options func(addr string) client.Options) (*servers, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no server to join: give at least one -join address")
	}
	s := &servers{addrs: addrs}
	for _, a := range addrs {
		o := options(a)
		o.OnTransport = func(t *http.Transport) { s.transports = append(s.transports, t) }
		c, err := client.New(o)
		if err != nil {
			return nil, err
		}
		s.clients = append(s.clients, c)
		tc, https, err := client.TLSConfig(o)
		if err != nil {
			return nil, err
		}
		s.proxyTLS = tc
		scheme, host := splitScheme(a)
		if https || scheme == "https" {
			scheme = "https"
		} else {
			scheme = "http"
		}
		s.hosts, s.schemes = append(s.hosts, host), append(s.schemes, scheme)
	}
	return s, nil
}

// retryable says whether another server may answer where this one failed:
// it could not be reached, or it has no leader.
func retryable(err error) bool {
	var se consulapi.StatusError
	if errors.As(err, &se) {
		return se.Code >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// do runs f against the servers, starting at the last one that answered,
// until one answers. f must be idempotent.
func (s *servers) do(ctx context.Context, f func(c *consulapi.Client) error) error {
	start := int(s.cur.Load())
	var err error
	for i := range s.clients {
		idx := (start + i) % len(s.clients)
		if err = f(s.clients[idx]); err == nil || !retryable(err) || ctx.Err() != nil {
			if err == nil {
				s.cur.Store(int64(idx))
			}
			return err
		}
	}
	return fmt.Errorf("no server answered (tried %v): %w", s.addrs, err)
}

// catalog is the servers' catalog, as the local state syncs to it.
type catalog struct{ srv *servers }

func (c catalog) NodeState(ctx context.Context, node string) (*local.Node, []local.Service, []local.Check, error) {
	var (
		cn     *consulapi.CatalogNode
		checks consulapi.HealthChecks
	)
	err := c.srv.do(ctx, func(cl *consulapi.Client) error {
		var err error
		q := (&consulapi.QueryOptions{}).WithContext(ctx)
		if cn, _, err = cl.Catalog().Node(node, q); err != nil || cn == nil {
			return err
		}
		checks, _, err = cl.Health().Node(node, q)
		return err
	})
	if err != nil || cn == nil || cn.Node == nil {
		return nil, nil, nil, err
	}
	n := &local.Node{ID: cn.Node.ID, Node: cn.Node.Node, Address: cn.Node.Address, TaggedAddresses: cn.Node.TaggedAddresses, Meta: cn.Node.Meta}
	var svcs []local.Service
	for _, sv := range cn.Services {
		svcs = append(svcs, local.Service{ID: sv.ID, Service: sv.Service, Tags: sv.Tags, Address: sv.Address, Meta: sv.Meta,
			Port: sv.Port, Weights: local.Weights{Passing: sv.Weights.Passing, Warning: sv.Weights.Warning}, EnableTagOverride: sv.EnableTagOverride})
	}
	var out []local.Check
	for _, ck := range checks {
		out = append(out, local.Check{CheckID: ck.CheckID, Name: ck.Name, Status: ck.Status, Notes: ck.Notes, Output: ck.Output,
			ServiceID: ck.ServiceID, ServiceName: ck.ServiceName, ServiceTags: ck.ServiceTags, Type: ck.Type})
	}
	return n, svcs, out, nil
}

func (c catalog) Register(ctx context.Context, r *local.Registration) error {
	reg := &consulapi.CatalogRegistration{ID: r.Node.ID, Node: r.Node.Node, Address: r.Node.Address,
		TaggedAddresses: r.Node.TaggedAddresses, NodeMeta: r.Node.Meta, SkipNodeUpdate: r.SkipNodeUpdate}
	if sv := r.Service; sv != nil {
		w := consulapi.AgentWeights{Passing: sv.Weights.Passing, Warning: sv.Weights.Warning}
		reg.Service = &consulapi.AgentService{ID: sv.ID, Service: sv.Service, Tags: sv.Tags, Address: sv.Address, Meta: sv.Meta,
			Port: sv.Port, Weights: w, EnableTagOverride: sv.EnableTagOverride}
	}
	for _, ck := range r.Checks {
		hc := &consulapi.HealthCheck{Node: r.Node.Node, CheckID: ck.CheckID, Name: ck.Name,
			Status: ck.Status, Notes: ck.Notes, Output: ck.Output, ServiceID: ck.ServiceID, Type: ck.Type}
		hc.Definition.IntervalDuration, _ = time.ParseDuration(ck.Interval)
		hc.Definition.TimeoutDuration, _ = time.ParseDuration(ck.Timeout)
		reg.Checks = append(reg.Checks, hc)
	}
	return c.srv.do(ctx, func(cl *consulapi.Client) error {
		_, err := cl.Catalog().Register(reg, (&consulapi.WriteOptions{}).WithContext(ctx))
		return err
	})
}

func (c catalog) Deregister(ctx context.Context, node, serviceID, checkID string) error {
	return c.srv.do(ctx, func(cl *consulapi.Client) error {
		_, err := cl.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: node, ServiceID: serviceID, CheckID: checkID},
			(&consulapi.WriteOptions{}).WithContext(ctx))
		return err
	})
}

// heartbeatAnswer is the leader's answer to a heartbeat.
type heartbeatAnswer struct {
	NodeTimeout string
	Interval    string
}

// heartbeat sends one heartbeat; unknown reports a node the catalog does
// not have.
func (s *servers) heartbeat(ctx context.Context, node string) (ans heartbeatAnswer, unknown bool, err error) {
	err = s.do(ctx, func(cl *consulapi.Client) error {
		_, err := cl.Raw().Write("/v1/kvx/heartbeat/"+node, nil, &ans, (&consulapi.WriteOptions{}).WithContext(ctx))
		return err
	})
	var se consulapi.StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return ans, true, err
	}
	return ans, false, err
}

// members lists the cluster's members from the catalog.
func (s *servers) members(ctx context.Context, dc string) ([]local.Member, error) {
	var (
		serf    consulapi.HealthChecks
		servers []*consulapi.CatalogService
		nodes   []*consulapi.Node
	)
	err := s.do(ctx, func(cl *consulapi.Client) error {
		q := (&consulapi.QueryOptions{Filter: `CheckID == "serfHealth"`}).WithContext(ctx)
		var err error
		if serf, _, err = cl.Health().State(consulapi.HealthAny, q); err != nil {
			return err
		}
		q = (&consulapi.QueryOptions{}).WithContext(ctx)
		if servers, _, err = cl.Catalog().Service(local.ConsulServiceID, "", q); err != nil {
			return err
		}
		nodes, _, err = cl.Catalog().Nodes(q)
		return err
	})
	if err != nil {
		return nil, err
	}
	byName := map[string]*consulapi.Node{}
	for _, n := range nodes {
		byName[n.Node] = n
	}
	port := map[string]int{}
	for _, sv := range servers {
		port[sv.Node] = sv.ServicePort
	}
	var out []local.Member
	for _, c := range serf {
		n := byName[c.Node]
		if n == nil || c.CheckID != local.SerfCheckID {
			continue
		}
		p, isServer := port[n.Node]
		out = append(out, local.Member{Name: n.Node, Addr: n.Address, Port: p, Server: isServer,
			Alive: c.Status == consulapi.HealthPassing, Build: n.Meta["consul-version"], Datacenter: dc})
	}
	return out, nil
}
