package local

import (
	"context"
	"maps"
	"slices"
)

// Check statuses.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// Reserved IDs: entries of a node the catalog's owner keeps, never removed
// by a sync.
const (
	SerfCheckID     = "serfHealth"
	ConsulServiceID = "consul"

	NodeMaintCheckID    = "_node_maintenance"
	serviceMaintPrefix  = "_service_maintenance:"
	nodeMaintName       = "Node Maintenance Mode"
	serviceMaintName    = "Service Maintenance Mode"
	nodeMaintDefault    = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
	serviceMaintDefault = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)

// ServiceMaintCheckID is the ID of a service's maintenance check.
func ServiceMaintCheckID(serviceID string) string { return serviceMaintPrefix + serviceID }

// Node is a node as the catalog holds it.
type Node struct {
	ID              string
	Node            string
	Address         string
	TaggedAddresses map[string]string
	Meta            map[string]string
}

func (n *Node) same(o *Node) bool {
	return n.ID == o.ID && n.Node == o.Node && n.Address == o.Address &&
		mapEq(n.TaggedAddresses, o.TaggedAddresses) && mapEq(n.Meta, o.Meta)
}

// Weights are a service's DNS SRV weights.
type Weights struct {
	Passing int
	Warning int
}

// Service is a service of the node.
type Service struct {
	ID                string
	Service           string
	Tags              []string
	Address           string
	Meta              map[string]string
	Port              int
	Weights           Weights
	EnableTagOverride bool
}

func (s *Service) same(o *Service) bool {
	return s.ID == o.ID && s.Service == o.Service && slices.Equal(s.Tags, o.Tags) && s.Address == o.Address &&
		mapEq(s.Meta, o.Meta) && s.Port == o.Port && s.Weights == o.Weights && s.EnableTagOverride == o.EnableTagOverride
}

// Check is a check of the node, or of one of its services.
type Check struct {
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
}

// same compares what a sync writes; ServiceName and ServiceTags follow the
// service, Interval and Timeout the definition.
func (c *Check) same(o *Check) bool {
	return c.CheckID == o.CheckID && c.Name == o.Name && c.Status == o.Status && c.Notes == o.Notes &&
		c.Output == o.Output && c.ServiceID == o.ServiceID
}

func mapEq(a, b map[string]string) bool { return maps.Equal(a, b) }

// Registration is one catalog write: the node (unchanged when
// SkipNodeUpdate), optionally one service, and checks.
type Registration struct {
	Node           Node
	SkipNodeUpdate bool
	Service        *Service
	Checks         []Check
}

// Catalog is the servers' catalog, as an agent reaches it.
type Catalog interface {
	// NodeState returns what the catalog holds for a node; a nil node
	// when it is not registered.
	NodeState(ctx context.Context, node string) (*Node, []Service, []Check, error)
	Register(ctx context.Context, r *Registration) error
	// Deregister removes the node (serviceID and checkID empty), one
	// service with its checks, or one check.
	Deregister(ctx context.Context, node, serviceID, checkID string) error
}
