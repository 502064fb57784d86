package server

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// The catalog endpoints: /v1/catalog/register and deregister (through Raft,
// on the leader), and the blocking reads.

const maxCatalogBody = 512 * 1024

// checkDefinition is a check in a register body (Consul's HealthCheck).
type checkDefinition struct {
	Node      string
	CheckID   string
	Name      string
	Status    string
	Notes     string
	Output    string
	ServiceID string
	Type      string
	Interval  string
	Timeout   string
	// Definition holds the check's Interval and Timeout when the client
	// sends them there (the Go client does).
	Definition struct {
		Interval string
		Timeout  string
	}
}

func (c *checkDefinition) state() *state.Check {
	out := &state.Check{Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes,
		Output: c.Output, ServiceID: c.ServiceID, Type: c.Type, Interval: c.Interval, Timeout: c.Timeout}
	if out.CheckID == "" {
		out.CheckID = c.Name // as Consul's checkPreApply
	}
	return out
}

// registerRequest is the body of PUT /v1/catalog/register.
type registerRequest struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	NodeMeta        map[string]string
	SkipNodeUpdate  bool
	Service         *struct {
		ID                string
		Service           string
		Tags              []string
		Address           string
		Meta              map[string]string
		Port              int
		Weights           *state.Weights
		EnableTagOverride bool
	}
	Check  *checkDefinition
	Checks []*checkDefinition
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// consulError is an error Consul's RPC layer returns, which its HTTP layer
// answers with 500 and the message (as recorded from Consul 1.22).
func consulError(msg string) error { return &httpError{code: http.StatusInternalServerError, msg: msg} }

// registration validates a register body as Consul's Catalog.Register does
// and turns it into the state's form.
func (s *Server) registration(req *registerRequest) (*state.Registration, error) {
	if req.Node == "" {
		return nil, consulError("Must provide node")
	}
	if req.Address == "" && !req.SkipNodeUpdate {
		return nil, consulError("Must provide address if SkipNodeUpdate is not set")
	}
	if req.ID != "" && !uuidRE.MatchString(req.ID) {
		return nil, consulError("Bad node ID: uuid string is wrong length")
	}
	if req.Datacenter != "" && req.Datacenter != s.opts.Datacenter {
		return nil, consulError("No path to datacenter")
	}
	reg := &state.Registration{SkipNodeUpdate: req.SkipNodeUpdate, Node: state.Node{
		ID: req.ID, Node: req.Node, Address: req.Address, TaggedAddresses: req.TaggedAddresses, Meta: req.NodeMeta}}
	if sv := req.Service; sv != nil {
		if sv.ID == "" {
			sv.ID = sv.Service
		}
		if sv.ID != "" && sv.Service == "" {
			return nil, consulError("Must provide service name with ID")
		}
		if sv.Address == "0.0.0.0" || sv.Address == "::" || sv.Address == "[::]" {
			return nil, consulError("Invalid service address")
		}
		w := defaultWeigh
		if sv.Weights != nil {
			w = *sv.Weights
		}
		if sv.Service != "" {
			reg.Service = &state.Service{ID: sv.ID, Service: sv.Service, Tags: sv.Tags, Address: sv.Address,
				Meta: sv.Meta, Port: sv.Port, Weights: w, EnableTagOverride: sv.EnableTagOverride}
		}
	}
	checks := req.Checks
	if req.Check != nil {
		checks = append(checks, req.Check)
	}
	for _, c := range checks {
		if c == nil {
			continue
		}
		if c.Status != "" && !state.ValidStatus(c.Status) {
			return nil, badRequest("Invalid check status: '" + c.Status + "'")
		}
		sc := c.state()
		if sc.Interval == "" && sc.Timeout == "" {
			sc.Interval, sc.Timeout = c.Definition.Interval, c.Definition.Timeout
		}
		reg.Checks = append(reg.Checks, sc)
	}
	return reg, nil
}

// decodeBody reads a JSON body into v, refusing it with Consul's messages.
func decodeBody(r *http.Request, v any) error {
	if r.ContentLength > maxCatalogBody {
		return tooLarge(r.ContentLength)
	}
	body, err := readBody(r, maxCatalogBody)
	if err != nil {
		return badRequest("Request decode failed: " + err.Error())
	}
	if len(body) > maxCatalogBody {
		return tooLarge(int64(len(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("Request decode failed: " + err.Error())
	}
	return nil
}

func (s *Server) handleCatalogRegister(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed(r, "PUT")
	}
	if err := s.checkScope(r.URL.Query()); err != nil {
		return err
	}
	if !s.IsLeader() {
		s.forward(w, r)
		return nil
	}
	var req registerRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	reg, err := s.registration(&req)
	if err != nil {
		return err
	}
	if err := s.registerAllowed(r, reg); err != nil {
		return err
	}
	cmd, err := encodeRegister(reg)
	return s.catalogWrite(w, cmd, err)
}

func (s *Server) handleCatalogDeregister(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed(r, "PUT")
	}
	if err := s.checkScope(r.URL.Query()); err != nil {
		return err
	}
	if !s.IsLeader() {
		s.forward(w, r)
		return nil
	}
	var req state.Deregistration
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Node == "" {
		return consulError("Must provide node")
	}
	if err := s.deregisterAllowed(r, &req); err != nil {
		return err
	}
	cmd, err := encodeDeregister(&req)
	return s.catalogWrite(w, cmd, err)
}

// catalogWrite commits a catalog command and answers true, as Consul does.
func (s *Server) catalogWrite(w http.ResponseWriter, cmd []byte, err error) error {
	if err != nil {
		return err
	}
	if _, err := s.apply(cmd); err != nil {
		return err
	}
	writeRawJSON(w, http.StatusOK, []byte("true"))
	return nil
}

func (s *Server) handleCatalogDatacenters(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, []string{s.opts.Datacenter})
	return nil
}

// catalogGET parses a catalog or health read's query, GET only, and with
// a prefix the path argument after it (what names it in the refusal of an
// empty one, as Consul's "Missing service name").
func (s *Server) catalogGET(r *http.Request, prefix, what string) (catalogQuery, string, error) {
	if err := onlyGET(r); err != nil {
		return catalogQuery{}, "", err
	}
	c, err := s.parseCatalogQuery(r.URL.Query())
	if err != nil || prefix == "" {
		return c, "", err
	}
	arg := strings.TrimPrefix(r.URL.Path, prefix)
	if arg == "" {
		return c, "", badRequest("Missing " + what)
	}
	return c, arg, nil
}

func (s *Server) handleCatalogNodes(w http.ResponseWriter, r *http.Request) error {
	c, _, err := s.catalogGET(r, "", "")
	if err != nil {
		return err
	}
	var nodes []*state.Node
	return s.catalogRead(w, r, &c, func(rt *state.ReadTxn, ws memdb.WatchSet) (idx uint64) {
		idx, nodes = rt.Nodes(ws)
		return idx
	}, func() (any, error) {
		out := []*nodeJSON{}
		for _, n := range nodes {
			if c.metaOK(n) && c.readable(n.Node, "") {
				out = append(out, s.nodeJSON(n))
			}
		}
		return filterSlice(&c, out)
	})
}

func (s *Server) handleCatalogServices(w http.ResponseWriter, r *http.Request) error {
	c, _, err := s.catalogGET(r, "", "")
	if err != nil {
		return err
	}
	var services map[string][]string
	var filterErr error
	return s.catalogRead(w, r, &c, func(rt *state.ReadTxn, ws memdb.WatchSet) (idx uint64) {
		var keep func(state.Instance) bool
		if c.filter != nil || len(c.nodeMeta) > 0 {
			keep = func(in state.Instance) bool {
				if !c.metaOK(in.Node) {
					return false
				}
				ok, err := c.match(s.serviceNode(in))
				if err != nil {
					filterErr = err
				}
				return ok
			}
		}
		idx, services = rt.Services(ws, keep)
		return idx
	}, func() (any, error) {
		for name := range services {
			if !c.az.ServiceRead(name) {
				delete(services, name)
				c.filtered = true
			}
		}
		return services, filterErr
	})
}

func (s *Server) handleCatalogService(w http.ResponseWriter, r *http.Request) error {
	c, name, err := s.catalogGET(r, "/v1/catalog/service/", "service name")
	if err != nil {
		return err
	}
	c.shared = true
	var instances []state.Instance
	return s.catalogRead(w, r, &c, func(rt *state.ReadTxn, ws memdb.WatchSet) (idx uint64) {
		idx, instances = rt.ServiceNodes(ws, name)
		return idx
	}, func() (any, error) {
		out := []*serviceNodeJSON{}
		for _, in := range instances {
			if c.metaOK(in.Node) && c.tagsOK(in.Service) && c.readable(in.Node.Node, in.Service.Service) {
				out = append(out, s.serviceNode(in))
			}
		}
		return filterSlice(&c, out)
	})
}

func (s *Server) handleCatalogNode(w http.ResponseWriter, r *http.Request) error {
	c, name, err := s.catalogGET(r, "/v1/catalog/node/", "node name")
	if err != nil {
		return err
	}
	var (
		node     *state.Node
		services []*state.Service
	)
	return s.catalogRead(w, r, &c, func(rt *state.ReadTxn, ws memdb.WatchSet) (idx uint64) {
		idx, node, services = rt.NodeServices(ws, name)
		return idx
	}, func() (any, error) {
		if node == nil || !c.readable(node.Node, "") {
			return nil, nil // Consul answers null for a missing node
		}
		out := &nodeServicesJSON{Node: s.nodeJSON(node), Services: map[string]*agentServiceJSON{}}
		for _, sv := range services {
			if !c.az.ServiceRead(sv.Service) {
				c.filtered = true
				continue
			}
			as := agentService(sv)
			ok, err := c.match(as)
			if err != nil {
				return nil, err
			}
			if ok {
				out.Services[sv.ID] = as
			}
		}
		return out, nil
	})
}

// serviceName is the name of a node's service instance, "" when missing.
func serviceName(rt *state.ReadTxn, node, id string) string {
	_, _, services := rt.NodeServices(nil, node)
	for _, sv := range services {
		if sv.ID == id {
			return sv.Service
		}
	}
	return ""
}

// registerAllowed applies Consul's checks to a registration: node write to
// create or change the node and for its node checks, service write for its
// service (under the old name too, if the ID had one) and service checks.
func (s *Server) registerAllowed(r *http.Request, reg *state.Registration) error {
	az, err := s.authz(r)
	if err != nil {
		return err
	}
	rt := s.store.Read()
	ok := true
	if n := rt.Node(reg.Node.Node); !reg.SkipNodeUpdate && (n == nil || n.Address != reg.Node.Address) {
		ok = az.NodeWrite(reg.Node.Node)
	}
	if sv := reg.Service; sv != nil {
		ok = ok && az.ServiceWrite(sv.Service)
		if old := serviceName(rt, reg.Node.Node, sv.ID); old != "" && old != sv.Service {
			ok = ok && az.ServiceWrite(old)
		}
	}
	for _, c := range reg.Checks {
		switch {
		case c.ServiceID == "":
			ok = ok && az.NodeWrite(reg.Node.Node)
		case reg.Service != nil && c.ServiceID == reg.Service.ID:
		default:
			ok = ok && az.ServiceWrite(serviceName(rt, reg.Node.Node, c.ServiceID))
		}
	}
	if !ok {
		return errPermissionDenied
	}
	return nil
}

// deregisterAllowed: service write for a service or its check, node write
// for a node check or the whole node.
func (s *Server) deregisterAllowed(r *http.Request, d *state.Deregistration) error {
	az, err := s.authz(r)
	if err != nil {
		return err
	}
	rt := s.store.Read()
	var ok bool
	switch {
	case d.ServiceID != "":
		name := serviceName(rt, d.Node, d.ServiceID)
		ok = name == "" && az.NodeWrite(d.Node) || name != "" && az.ServiceWrite(name)
	case d.CheckID != "":
		ok = az.NodeWrite(d.Node)
		for _, c := range checksOfNode(rt, d.Node) {
			if c.CheckID == d.CheckID && c.ServiceID != "" {
				ok = az.ServiceWrite(c.ServiceName)
			}
		}
	default:
		ok = az.NodeWrite(d.Node)
	}
	if !ok {
		return errPermissionDenied
	}
	return nil
}

func checksOfNode(rt *state.ReadTxn, node string) []*state.Check {
	_, checks := rt.NodeChecks(nil, node)
	return checks
}
