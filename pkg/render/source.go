package render

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// The parts of the Consul API client render reads through; *api.KV,
// *api.Health and *api.Catalog satisfy them.
type (
	KVAPI interface {
		Get(key string, q *consulapi.QueryOptions) (*consulapi.KVPair, *consulapi.QueryMeta, error)
		List(prefix string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error)
	}
	HealthAPI interface {
		Service(service, tag string, passingOnly bool, q *consulapi.QueryOptions) ([]*consulapi.ServiceEntry, *consulapi.QueryMeta, error)
	}
	CatalogAPI interface {
		Services(q *consulapi.QueryOptions) (map[string][]string, *consulapi.QueryMeta, error)
		Node(node string, q *consulapi.QueryOptions) (*consulapi.CatalogNode, *consulapi.QueryMeta, error)
		Nodes(q *consulapi.QueryOptions) ([]*consulapi.Node, *consulapi.QueryMeta, error)
	}
)

// Source is where dependencies are read: a Consul-compatible server.
type Source struct {
	KV      KVAPI
	Health  HealthAPI
	Catalog CatalogAPI
	// NodeName is the agent's own node, for node() without a name.
	NodeName func() (string, error)
}

// QueryOptions tune one fetch.
type QueryOptions struct {
	Index      uint64        // block until the data's index passes this
	Wait       time.Duration // longest block
	AllowStale bool          // any server may answer
}

// Fetched is one answer: the value the template functions see, and the
// index and staleness the server reported.
type Fetched struct {
	Value       any // nil: a missing key or file
	Index       uint64
	LastContact time.Duration
	KnownLeader bool
}

// KeyPair is a key as ls and tree give it, with consul-template's fields:
// Key is relative to the prefix asked for, Path is the full key.
type KeyPair struct {
	Path        string
	Key         string
	Value       string
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Flags       uint64
	Session     string
}

// ServiceTags are a service's tags, sorted; .Contains tests one.
type ServiceTags []string

// Contains reports whether the tags include tag.
func (t ServiceTags) Contains(tag string) bool { return slices.Contains(t, tag) }

// HealthService is one instance, as service gives it.
type HealthService struct {
	Node                   string
	NodeID                 string
	NodeAddress            string
	NodeTaggedAddresses    map[string]string
	NodeMeta               map[string]string
	ServiceMeta            map[string]string
	Address                string
	ServiceTaggedAddresses map[string]consulapi.ServiceAddress
	ID                     string
	Name                   string
	Tags                   ServiceTags
	Checks                 consulapi.HealthChecks
	Status                 string
	Port                   int
	Weights                consulapi.AgentWeights
}

// CatalogSnippet is one service of services.
type CatalogSnippet struct {
	Name string
	Tags ServiceTags
}

// Node is a node as nodes gives it.
type Node struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
}

// CatalogNode is node's answer: the node and its services.
type CatalogNode struct {
	Node     *Node
	Services []*CatalogNodeService
}

// CatalogNodeService is one service of a node.
type CatalogNodeService struct {
	ID                string
	Service           string
	Tags              ServiceTags
	Meta              map[string]string
	Port              int
	Address           string
	EnableTagOverride bool
}

func (o QueryOptions) consul(ctx context.Context, dc string) *consulapi.QueryOptions {
	q := &consulapi.QueryOptions{WaitIndex: o.Index, WaitTime: o.Wait, AllowStale: o.AllowStale, Datacenter: dc}
	return q.WithContext(ctx)
}

func fetched(v any, m *consulapi.QueryMeta) Fetched {
	f := Fetched{Value: v}
	if m != nil {
		f.Index, f.LastContact, f.KnownLeader = m.LastIndex, m.LastContact, m.KnownLeader
	}
	return f
}

// errNoCatalog is returned for catalog dependencies when the source has no
// catalog client.
var errNoCatalog = errors.New("no catalog source")

// Fetch reads d once.
func (s Source) Fetch(ctx context.Context, d Dep, o QueryOptions) (Fetched, error) {
	q := o.consul(ctx, d.DC)
	switch d.Kind {
	case KindKey, KindKeyBlock:
		p, m, err := s.KV.Get(d.Path, q)
		if err != nil {
			return Fetched{}, fmt.Errorf("%s: %w", d, err)
		}
		if p == nil {
			return fetched(nil, m), nil
		}
		return fetched(string(p.Value), m), nil
	case KindList:
		list, m, err := s.KV.List(d.Path, q)
		if err != nil {
			return Fetched{}, fmt.Errorf("%s: %w", d, err)
		}
		pairs := make([]*KeyPair, 0, len(list))
		for _, p := range list {
			pairs = append(pairs, &KeyPair{
				Path: p.Key, Key: strings.TrimLeft(strings.TrimPrefix(p.Key, d.Path), "/"), Value: string(p.Value),
				CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex, LockIndex: p.LockIndex, Flags: p.Flags, Session: p.Session,
			})
		}
		return fetched(pairs, m), nil
	case KindService:
		return s.fetchService(d, q)
	case KindServices:
		if s.Catalog == nil {
			return Fetched{}, fmt.Errorf("%s: %w", d, errNoCatalog)
		}
		entries, m, err := s.Catalog.Services(q)
		if err != nil {
			return Fetched{}, fmt.Errorf("%s: %w", d, err)
		}
		out := make([]*CatalogSnippet, 0, len(entries))
		for name, tags := range entries {
			out = append(out, &CatalogSnippet{Name: name, Tags: sortedTags(tags)})
		}
		slices.SortStableFunc(out, func(a, b *CatalogSnippet) int { return cmp.Compare(a.Name, b.Name) })
		return fetched(out, m), nil
	case KindNode:
		return s.fetchNode(d, q)
	case KindNodes:
		if s.Catalog == nil {
			return Fetched{}, fmt.Errorf("%s: %w", d, errNoCatalog)
		}
		q.Near = d.Near
		list, m, err := s.Catalog.Nodes(q)
		if err != nil {
			return Fetched{}, fmt.Errorf("%s: %w", d, err)
		}
		out := make([]*Node, 0, len(list))
		for _, n := range list {
			out = append(out, toNode(n))
		}
		if d.Near == "" {
			slices.SortStableFunc(out, func(a, b *Node) int { return cmp.Compare(a.Node, b.Node) })
		}
		return fetched(out, m), nil
	case KindFile:
		b, err := os.ReadFile(d.Path)
		if errors.Is(err, os.ErrNotExist) {
			return Fetched{}, nil
		}
		if err != nil {
			return Fetched{}, fmt.Errorf("%s: %w", d, err)
		}
		return Fetched{Value: string(b)}, nil
	}
	return Fetched{}, fmt.Errorf("%s: unknown dependency kind", d)
}

func (s Source) fetchService(d Dep, q *consulapi.QueryOptions) (Fetched, error) {
	if s.Health == nil {
		return Fetched{}, fmt.Errorf("%s: %w", d, errNoCatalog)
	}
	q.Near = d.Near
	passingOnly := len(d.Filters) == 1 && d.Filters[0] == healthPassing
	entries, m, err := s.Health.Service(d.Path, d.Tag, passingOnly, q)
	if err != nil {
		return Fetched{}, fmt.Errorf("%s: %w", d, err)
	}
	out := make([]*HealthService, 0, len(entries))
	for _, e := range entries {
		status := e.Checks.AggregatedStatus()
		if !acceptStatus(d.Filters, status) {
			continue
		}
		addr := e.Service.Address
		if addr == "" {
			addr = e.Node.Address
		}
		out = append(out, &HealthService{
			Node: e.Node.Node, NodeID: e.Node.ID, NodeAddress: e.Node.Address,
			NodeTaggedAddresses: e.Node.TaggedAddresses, NodeMeta: e.Node.Meta,
			ServiceMeta: e.Service.Meta, Address: addr, ServiceTaggedAddresses: e.Service.TaggedAddresses,
			ID: e.Service.ID, Name: e.Service.Service, Tags: sortedTags(e.Service.Tags),
			Checks: e.Checks, Status: status, Port: e.Service.Port, Weights: e.Service.Weights,
		})
	}
	if d.Near == "" {
		slices.SortStableFunc(out, func(a, b *HealthService) int {
			return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
		})
	}
	return fetched(out, m), nil
}

// acceptStatus: "any" takes every instance; otherwise the aggregated status
// must be one of the filters.
func acceptStatus(filters []string, status string) bool {
	return slices.Contains(filters, healthAny) || slices.Contains(filters, status)
}

func (s Source) fetchNode(d Dep, q *consulapi.QueryOptions) (Fetched, error) {
	if s.Catalog == nil {
		return Fetched{}, fmt.Errorf("%s: %w", d, errNoCatalog)
	}
	name := d.Path
	if name == "" {
		if s.NodeName == nil {
			return Fetched{}, fmt.Errorf("%s: no node name and no agent to ask", d)
		}
		var err error
		if name, err = s.NodeName(); err != nil {
			return Fetched{}, fmt.Errorf("%s: agent node name: %w", d, err)
		}
	}
	n, m, err := s.Catalog.Node(name, q)
	if err != nil {
		return Fetched{}, fmt.Errorf("%s: %w", d, err)
	}
	if n == nil || n.Node == nil {
		return fetched(nil, m), nil
	}
	out := &CatalogNode{Node: toNode(n.Node), Services: []*CatalogNodeService{}}
	for _, sv := range n.Services {
		out.Services = append(out.Services, &CatalogNodeService{
			ID: sv.ID, Service: sv.Service, Tags: sortedTags(sv.Tags), Meta: sv.Meta,
			Port: sv.Port, Address: sv.Address, EnableTagOverride: sv.EnableTagOverride,
		})
	}
	slices.SortStableFunc(out.Services, func(a, b *CatalogNodeService) int { return cmp.Compare(a.Service, b.Service) })
	return fetched(out, m), nil
}

func toNode(n *consulapi.Node) *Node {
	return &Node{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter, TaggedAddresses: n.TaggedAddresses, Meta: n.Meta}
}

func sortedTags(tags []string) ServiceTags {
	out := slices.Clone(tags)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out
}
