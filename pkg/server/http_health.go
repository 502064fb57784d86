package server

import (
	"net/http"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// The health endpoints: blocking reads of the catalog's checks.

func (s *Server) handleHealthService(w http.ResponseWriter, r *http.Request) error {
	c, name, err := s.catalogGET(r, "/v1/health/service/", "service name")
	if err != nil {
		return err
	}
	c.shared = true
	var instances []state.HealthInstance
	return s.catalogRead(w, r, &c, func(rt *state.ReadTxn, ws memdb.WatchSet) (idx uint64) {
		idx, instances = rt.ServiceHealth(ws, name)
		return idx
	}, func() (any, error) {
		out := make([]*healthJSON, 0, len(instances))
		for i := range instances {
			h := &instances[i]
			if c.metaOK(h.Node) && c.tagsOK(h.Service) && (!c.passing || h.Passing()) && c.readable(h.Node.Node, h.Service.Service) {
				out = append(out, s.healthOut(h))
			}
		}
		return filterSlice(&c, out)
	})
}

// checksRead answers the health reads whose answer is a list of checks.
func (s *Server) checksRead(w http.ResponseWriter, r *http.Request, c *catalogQuery,
	query func(rt *state.ReadTxn, ws memdb.WatchSet) (uint64, []*state.Check)) error {
	var (
		checks []*state.Check
		nodes  map[string]*state.Node // for ?node-meta
	)
	return s.catalogRead(w, r, c, func(rt *state.ReadTxn, ws memdb.WatchSet) (idx uint64) {
		idx, checks = query(rt, ws)
		if len(c.nodeMeta) > 0 {
			nodes = map[string]*state.Node{}
			for _, ch := range checks {
				if n := rt.Node(ch.Node); n != nil {
					nodes[ch.Node] = n
				}
			}
		}
		return idx
	}, func() (any, error) {
		out := make([]*checkJSON, 0, len(checks))
		for _, ch := range checks {
			if !c.readable(ch.Node, ch.ServiceName) {
				continue
			}
			if nodes != nil {
				if n := nodes[ch.Node]; n == nil || !c.metaOK(n) {
					continue
				}
			}
			out = append(out, checkOut(ch))
		}
		return filterSlice(c, out)
	})
}

func (s *Server) handleHealthChecks(w http.ResponseWriter, r *http.Request) error {
	c, name, err := s.catalogGET(r, "/v1/health/checks/", "service name")
	if err != nil {
		return err
	}
	return s.checksRead(w, r, &c, func(rt *state.ReadTxn, ws memdb.WatchSet) (uint64, []*state.Check) {
		return rt.ServiceChecks(ws, name)
	})
}

func (s *Server) handleHealthNode(w http.ResponseWriter, r *http.Request) error {
	c, name, err := s.catalogGET(r, "/v1/health/node/", "node name")
	if err != nil {
		return err
	}
	return s.checksRead(w, r, &c, func(rt *state.ReadTxn, ws memdb.WatchSet) (uint64, []*state.Check) {
		return rt.NodeChecks(ws, name)
	})
}

// handleHealthState answers /v1/health/state/:state. A state that is not
// any, passing, warning or critical matches no check: Consul 1.22 answers it
// with 200 and [] (see the conformance recording).
func (s *Server) handleHealthState(w http.ResponseWriter, r *http.Request) error {
	c, status, err := s.catalogGET(r, "/v1/health/state/", "check state")
	if err != nil {
		return err
	}
	return s.checksRead(w, r, &c, func(rt *state.ReadTxn, ws memdb.WatchSet) (uint64, []*state.Check) {
		idx, checks := rt.ChecksInState(ws, status)
		if c.passing && status == state.HealthAny {
			kept := checks[:0:0]
			for _, ch := range checks {
				if ch.Status == state.HealthPassing {
					kept = append(kept, ch)
				}
			}
			checks = kept
		}
		return idx, checks
	})
}
