package server

import (
	"encoding/json"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// The catalog's and health's wire format: Consul's structs, with Consul's
// field names, nulls and empty objects where Consul has them (see
// ../shared/conformance/catalog.golden.json). The same structs are what a
// ?filter expression is evaluated against, so its selectors are Consul's.

// Consul's service-mesh fields, always empty here; kept so clients that
// decode them find what they expect.
var (
	emptyProxy   = json.RawMessage(`{"Mode":"","MeshGateway":{},"Expose":{}}`)
	emptyObject  = json.RawMessage(`{}`)
	nullRaw      = json.RawMessage(`null`)
	defaultWeigh = state.Weights{Passing: 1, Warning: 1}
)

type nodeJSON struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

func (s *Server) nodeJSON(n *state.Node) *nodeJSON {
	return &nodeJSON{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: s.opts.Datacenter,
		TaggedAddresses: n.TaggedAddresses, Meta: n.Meta, CreateIndex: n.CreateIndex, ModifyIndex: n.ModifyIndex}
}

// agentServiceJSON is a service as /v1/catalog/node/:n and /v1/health/service
// show it (Consul's AgentService).
type agentServiceJSON struct {
	ID                string
	Service           string
	Tags              []string
	Address           string
	Meta              map[string]string
	Port              int
	Weights           state.Weights
	EnableTagOverride bool
	Proxy             json.RawMessage
	Connect           json.RawMessage
	PeerName          string
	CreateIndex       uint64
	ModifyIndex       uint64
}

func agentService(sv *state.Service) *agentServiceJSON {
	return &agentServiceJSON{ID: sv.ID, Service: sv.Service, Tags: sv.Tags, Address: sv.Address, Meta: sv.Meta,
		Port: sv.Port, Weights: sv.Weights, EnableTagOverride: sv.EnableTagOverride, Proxy: emptyProxy,
		Connect: emptyObject, CreateIndex: sv.CreateIndex, ModifyIndex: sv.ModifyIndex}
}

// serviceNodeJSON is an element of /v1/catalog/service/:s (Consul's
// ServiceNode): the node's fields and the service's, flattened.
type serviceNodeJSON struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceKind              string
	ServiceID                string
	ServiceName              string
	ServiceTags              []string
	ServiceAddress           string
	ServiceWeights           state.Weights
	ServiceMeta              map[string]string
	ServicePort              int
	ServicePorts             json.RawMessage
	ServiceSocketPath        string
	ServiceEnableTagOverride bool
	ServiceProxy             json.RawMessage
	ServiceConnect           json.RawMessage
	ServiceLocality          json.RawMessage
	CreateIndex              uint64
	ModifyIndex              uint64
}

func (s *Server) serviceNode(in state.Instance) *serviceNodeJSON {
	n, sv := in.Node, in.Service
	meta := sv.Meta
	if meta == nil {
		meta = map[string]string{} // Consul answers {} here, and null in health
	}
	return &serviceNodeJSON{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: s.opts.Datacenter,
		TaggedAddresses: n.TaggedAddresses, NodeMeta: n.Meta, ServiceID: sv.ID, ServiceName: sv.Service,
		ServiceTags: sv.Tags, ServiceAddress: sv.Address, ServiceWeights: sv.Weights, ServiceMeta: meta,
		ServicePort: sv.Port, ServicePorts: nullRaw, ServiceEnableTagOverride: sv.EnableTagOverride,
		ServiceProxy: emptyProxy, ServiceConnect: emptyObject, ServiceLocality: nullRaw,
		CreateIndex: sv.CreateIndex, ModifyIndex: sv.ModifyIndex}
}

type checkJSON struct {
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
	ExposedPort int
	Definition  json.RawMessage
	CreateIndex uint64
	ModifyIndex uint64
}

func checkOut(c *state.Check) *checkJSON {
	return &checkJSON{Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes,
		Output: c.Output, ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: c.ServiceTags,
		Type: c.Type, Interval: c.Interval, Timeout: c.Timeout, Definition: emptyObject,
		CreateIndex: c.CreateIndex, ModifyIndex: c.ModifyIndex}
}

func checksOut(cs []*state.Check) []*checkJSON {
	out := make([]*checkJSON, len(cs))
	for i, c := range cs {
		out[i] = checkOut(c)
	}
	return out
}

// healthJSON is an element of /v1/health/service/:s (Consul's
// CheckServiceNode).
type healthJSON struct {
	Node    *nodeJSON
	Service *agentServiceJSON
	Checks  []*checkJSON
}

func (s *Server) healthOut(h *state.HealthInstance) *healthJSON {
	return &healthJSON{Node: s.nodeJSON(h.Node), Service: agentService(h.Service), Checks: checksOut(h.Checks)}
}

// nodeServicesJSON is /v1/catalog/node/:n.
type nodeServicesJSON struct {
	Node     *nodeJSON
	Services map[string]*agentServiceJSON
}
