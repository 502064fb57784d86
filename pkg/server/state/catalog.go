package state

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	memdb "github.com/hashicorp/go-memdb"
)

// Node is a catalog node. Its datacenter is the server's, so it is not kept.
type Node struct {
	ID              string
	Node            string
	Address         string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

func (n *Node) sameContent(o *Node) bool {
	return n.ID == o.ID && n.Address == o.Address &&
		maps.Equal(n.TaggedAddresses, o.TaggedAddresses) && maps.Equal(n.Meta, o.Meta)
}

// Weights are a service instance's DNS SRV weights.
type Weights struct {
	Passing int
	Warning int
}

// Service is one service instance on a node.
type Service struct {
	Node              string
	ID                string
	Service           string
	Tags              []string
	Address           string
	Meta              map[string]string
	Port              int
	Weights           Weights
	EnableTagOverride bool
	CreateIndex       uint64
	ModifyIndex       uint64
}

func (s *Service) sameContent(o *Service) bool {
	return s.Service == o.Service && slices.Equal(s.Tags, o.Tags) && s.Address == o.Address &&
		maps.Equal(s.Meta, o.Meta) && s.Port == o.Port && s.Weights == o.Weights &&
		s.EnableTagOverride == o.EnableTagOverride
}

// The check statuses.
const (
	HealthPassing  = "passing"
	HealthWarning  = "warning"
	HealthCritical = "critical"
	HealthAny      = "any"
)

// ValidStatus reports whether s is a status a check may have.
func ValidStatus(s string) bool {
	return s == HealthPassing || s == HealthWarning || s == HealthCritical
}

// Check is a health check of a node (ServiceID empty) or of one service
// instance on it. ServiceName and ServiceTags are copied from the service.
type Check struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Interval    string
	Timeout     string
	CreateIndex uint64
	ModifyIndex uint64
}

func (c *Check) sameContent(o *Check) bool {
	return c.Name == o.Name && c.Status == o.Status && c.Notes == o.Notes && c.Output == o.Output &&
		c.ServiceID == o.ServiceID && c.ServiceName == o.ServiceName && slices.Equal(c.ServiceTags, o.ServiceTags) &&
		c.Type == o.Type && c.Interval == o.Interval && c.Timeout == o.Timeout
}

// Registration is one catalog register request: a node, optionally one
// service on it, and checks of the node or of its services.
type Registration struct {
	Node           Node
	SkipNodeUpdate bool // keep the node as it is, if it exists
	Service        *Service
	Checks         []*Check
}

// Deregistration removes a node (with everything on it), or one service
// (with its checks), or one check.
type Deregistration struct {
	Node      string
	ServiceID string
	CheckID   string
}

// ErrCatalog is wrapped by every refusal of a catalog write: input that the
// state makes invalid. The write changes nothing.
var ErrCatalog = errors.New("catalog")

type catalogError struct{ msg string }

func (e *catalogError) Error() string        { return e.msg }
func (e *catalogError) Is(target error) bool { return target == ErrCatalog }

func refuse(format string, args ...any) error {
	return &catalogError{msg: fmt.Sprintf(format, args...)}
}

const (
	tableNodes    = "nodes"
	tableServices = "services"
	tableChecks   = "checks"
)

// Index entries kept per service and per node, in the index table beside the
// per-table ones. They move with every change to what a query on that service
// (its instances, their nodes, their checks and their nodes' checks) or node
// reads, and outlive the service or node: a query on a service that is gone
// answers with the index of its removal, which never goes backwards.
func serviceIndexName(service string) string { return "service." + strings.ToLower(service) }
func nodeIndexName(node string) string       { return "node." + strings.ToLower(node) }

// catalogTables is the catalog's part of the schema. Names and IDs are
// case-insensitive, as in Consul; services and checks are keyed by node and
// ID, so a node's are found by prefix. Every index costs a radix leaf per
// row (most of the catalog's memory), so there are only the ones the
// queries on one service need; a node has a handful of checks, and the
// queries on all checks by state scan them.
func catalogTables() map[string]*memdb.TableSchema {
	lower := func(field string) memdb.Indexer { return &memdb.StringFieldIndex{Field: field, Lowercase: true} }
	byNodeAnd := func(field string) memdb.Indexer {
		return &memdb.CompoundIndex{Indexes: []memdb.Indexer{lower("Node"), lower(field)}}
	}
	return map[string]*memdb.TableSchema{
		tableNodes: {Name: tableNodes, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: lower("Node")},
		}},
		tableServices: {Name: tableServices, Indexes: map[string]*memdb.IndexSchema{
			"id":      {Name: "id", Unique: true, Indexer: byNodeAnd("ID")},
			"service": {Name: "service", Indexer: lower("Service")},
		}},
		tableChecks: {Name: tableChecks, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: byNodeAnd("CheckID")},
		}},
	}
}
