package server

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// The /v1/agent/* endpoints of the server's own node: services and checks
// registered on it (see agent_local.go). As in Consul, they answer without
// the X-Consul-Index headers, and the PUTs answer 200 with an empty body.

// agentCheckDefinition is a check in an agent registration (Consul's
// AgentServiceCheck and AgentCheckRegistration).
type agentCheckDefinition struct {
	ID, CheckID, Name, Notes, Status, ServiceID string
	TTL, HTTP, TCP, GRPC, Interval, Timeout     string
	Args                                        []string
}

// agentServiceRegistration is the body of /v1/agent/service/register.
type agentServiceRegistration struct {
	ID, Name, Address string
	Tags              []string
	Port              int
	Meta              map[string]string
	Weights           *state.Weights
	EnableTagOverride bool
	Check             *agentCheckDefinition
	Checks            []*agentCheckDefinition
}

// localCheckFrom turns a check definition into a local check, with
// Consul's defaults: critical until a result says otherwise.
func localCheckFrom(d *agentCheckDefinition) (*localCheck, error) {
	c := &localCheck{check: state.Check{CheckID: d.CheckID, Name: d.Name, Notes: d.Notes, Status: d.Status,
		ServiceID: d.ServiceID, Interval: d.Interval, Timeout: d.Timeout}}
	if c.check.CheckID == "" {
		c.check.CheckID = d.ID
	}
	if c.check.Status == "" {
		c.check.Status = state.HealthCritical
	}
	if !state.ValidStatus(c.check.Status) {
		return nil, badRequest(fmt.Sprintf("Invalid check status: '%s'", c.check.Status))
	}
	switch {
	case d.TTL != "":
		ttl, err := time.ParseDuration(d.TTL)
		if err != nil || ttl <= 0 {
			return nil, badRequest(fmt.Sprintf("Invalid check TTL %q", d.TTL))
		}
		c.ttl, c.check.Type = ttl, "ttl"
	case d.HTTP != "":
		c.check.Type = "http"
	case d.TCP != "":
		c.check.Type = "tcp"
	case d.GRPC != "":
		c.check.Type = "grpc"
	case len(d.Args) > 0:
		c.check.Type = "script"
	}
	return c, nil
}

func (s *Server) handleAgentServiceRegister(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed(r, "PUT")
	}
	var req agentServiceRegistration
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return badRequest("Missing service name")
	}
	if req.ID == "" {
		req.ID = req.Name
	}
	weights := defaultWeigh
	if req.Weights != nil {
		weights = *req.Weights
	}
	sv := &state.Service{ID: req.ID, Service: req.Name, Tags: req.Tags, Address: req.Address, Meta: req.Meta,
		Port: req.Port, Weights: weights, EnableTagOverride: req.EnableTagOverride}
	defs := req.Checks
	if req.Check != nil {
		defs = append([]*agentCheckDefinition{req.Check}, defs...)
	}
	var checks []*localCheck
	for i, d := range defs {
		c, err := localCheckFrom(d)
		if err != nil {
			return err
		}
		c.check.ServiceID = req.ID
		if c.check.CheckID == "" {
			c.check.CheckID = "service:" + req.ID
			if len(defs) > 1 {
				c.check.CheckID = fmt.Sprintf("service:%s:%d", req.ID, i+1)
			}
		}
		if c.check.Name == "" {
			c.check.Name = fmt.Sprintf("Service '%s' check", req.Name)
		}
		checks = append(checks, c)
	}
	return s.addLocal(sv, checks)
}

func (s *Server) handleAgentCheckRegister(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed(r, "PUT")
	}
	var d agentCheckDefinition
	if err := decodeBody(r, &d); err != nil {
		return err
	}
	if d.Name == "" {
		return badRequest("Missing check name")
	}
	c, err := localCheckFrom(&d)
	if err != nil {
		return err
	}
	if c.check.CheckID == "" {
		c.check.CheckID = d.Name
	}
	if sid := c.check.ServiceID; sid != "" {
		s.agent.mu.Lock()
		known := s.agent.services[sid] != nil
		s.agent.mu.Unlock()
		if !known {
			return badRequest(fmt.Sprintf("ServiceID %q does not exist", sid))
		}
	}
	return s.addLocal(nil, []*localCheck{c})
}

// handleAgentCheck serves /v1/agent/check/{pass,warn,fail,update,deregister}/:id.
func (s *Server) handleAgentCheck(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed(r, "PUT")
	}
	verb, id, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/agent/check/"), "/")
	status := map[string]string{"pass": state.HealthPassing, "warn": state.HealthWarning, "fail": state.HealthCritical}[verb]
	switch {
	case verb == "register":
		return s.handleAgentCheckRegister(w, r)
	case id == "":
		return badRequest("Missing check ID")
	case verb == "deregister":
		return s.removeLocal("", id)
	case status != "":
		return s.updateLocalCheck(id, status, r.URL.Query().Get("note"), true)
	case verb == "update":
		var u struct{ Status, Output string }
		if err := decodeBody(r, &u); err != nil {
			return err
		}
		if !state.ValidStatus(u.Status) {
			return badRequest(fmt.Sprintf("Invalid check status: '%s'", u.Status))
		}
		return s.updateLocalCheck(id, u.Status, u.Output, true)
	}
	return &httpError{code: http.StatusNotFound, msg: "404 page not found"}
}

func (s *Server) handleAgentService(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/agent/service/")
	switch {
	case rest == "register":
		return s.handleAgentServiceRegister(w, r)
	case strings.HasPrefix(rest, "deregister/"):
		if r.Method != http.MethodPut {
			return methodNotAllowed(r, "PUT")
		}
		return s.removeLocal(strings.TrimPrefix(rest, "deregister/"), "")
	}
	return &httpError{code: http.StatusNotFound, msg: "404 page not found"}
}

// agentServiceOut is a service as /v1/agent/services shows it.
type agentServiceOut struct {
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	Weights           state.Weights
	EnableTagOverride bool
	Datacenter        string
}

func (s *Server) handleAgentServices(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	svcs, _ := s.localView()
	out := map[string]*agentServiceOut{}
	for _, sv := range svcs {
		meta := sv.Meta
		if meta == nil {
			meta = map[string]string{}
		}
		out[sv.ID] = &agentServiceOut{ID: sv.ID, Service: sv.Service, Tags: sv.Tags, Meta: meta, Port: sv.Port,
			Address: sv.Address, Weights: sv.Weights, EnableTagOverride: sv.EnableTagOverride, Datacenter: s.opts.Datacenter}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleAgentChecks(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	svcs, checks := s.localView()
	out := map[string]*checkJSON{}
	for _, c := range checks {
		c.Node = s.opts.NodeName
		c.ServiceTags = []string{}
		for _, sv := range svcs {
			if sv.ID == c.ServiceID {
				c.ServiceName, c.ServiceTags = sv.Service, append([]string{}, sv.Tags...)
			}
		}
		out[c.CheckID] = checkOut(&c)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
