package local

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	bexpr "github.com/hashicorp/go-bexpr"
)

// Handler serves the /v1/agent/* endpoints of the node's state: services,
// checks, service/*, check/*, health/service/*, maintenance. As in Consul,
// they answer without X-Consul-Index, and the PUTs answer 200 with an empty
// body once the change is synced to the catalog (or the sync failed: the
// local state is the truth, the next sync retries).
func (s *State) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.serve(w, r); err != nil {
			writeError(w, err)
		}
	})
}

// syncWait bounds how long a PUT waits for its sync.
const syncWait = 10 * time.Second

func (s *State) serve(w http.ResponseWriter, r *http.Request) error {
	r, err := s.withAuthz(r)
	if err != nil {
		return err
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/agent/")
	verb, rest, _ := strings.Cut(path, "/")
	switch {
	case path == "services":
		return get(r, func() error { return s.serveServices(w, r) })
	case path == "checks":
		return get(r, func() error { return s.serveChecks(w, r) })
	case path == "maintenance":
		return put(r, func() error {
			enable, reason, err := maintParams(r)
			if err != nil {
				return err
			}
			if err := need(authzOf(r).NodeWrite(s.opts.Node.Node)); err != nil {
				return err
			}
			s.SetNodeMaintenance(enable, reason)
			return s.wait(r, w)
		})
	case verb == "service":
		return s.serveService(w, r, rest)
	case verb == "check":
		return s.serveCheck(w, r, rest)
	case strings.HasPrefix(path, "health/service/name/"):
		return get(r, func() error { return s.serveHealth(w, r, strings.TrimPrefix(path, "health/service/name/"), "") })
	case strings.HasPrefix(path, "health/service/id/"):
		return get(r, func() error { return s.serveHealth(w, r, "", strings.TrimPrefix(path, "health/service/id/")) })
	}
	return &httpError{code: http.StatusNotFound, msg: "404 page not found"}
}

func get(r *http.Request, f func() error) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed(r, "GET")
	}
	return f()
}

func put(r *http.Request, f func() error) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed(r, "PUT")
	}
	return f()
}

type allowError struct {
	httpError
	allow string
}

func methodNotAllowed(r *http.Request, allow string) error {
	return &allowError{httpError{code: http.StatusMethodNotAllowed, msg: "method " + r.Method + " not allowed"}, allow}
}

// wait answers a PUT once its change is synced.
func (s *State) wait(r *http.Request, w http.ResponseWriter) error {
	ctx, cancel := context.WithTimeout(r.Context(), syncWait)
	defer cancel()
	if err := s.SyncNow(ctx); err != nil && r.Context().Err() == nil {
		s.log.Debug("sync after an agent API change", "path", r.URL.Path, "err", err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func writeError(w http.ResponseWriter, err error) {
	code, msg := http.StatusInternalServerError, err.Error()
	var he *httpError
	var ae *allowError
	var se StatusError
	switch {
	case errors.As(err, &se):
		code = se.HTTPStatus()
	case errors.As(err, &ae):
		code, msg = ae.code, ae.msg
		w.Header().Set("Allow", ae.allow)
	case errors.As(err, &he):
		code, msg = he.code, he.msg
	case errors.Is(err, ErrUnknownService):
		code, msg = http.StatusNotFound, fmt.Sprintf("Unknown service ID %s. Ensure that the service ID is passed, not the service name.", idOf(err))
	case errors.Is(err, ErrUnknownCheck):
		code, msg = http.StatusNotFound, fmt.Sprintf("Unknown check ID %s. Ensure that the check ID is passed, not the check name.", idOf(err))
	case errors.Is(err, ErrInvalid):
		code, msg = http.StatusBadRequest, strings.TrimPrefix(msg, ErrInvalid.Error()+": ")
	case errors.Is(err, context.Canceled):
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}

// idOf returns the quoted ID at the end of an ErrUnknown* error.
func idOf(err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '"'); i >= 0 {
		return msg[i:]
	}
	return `""`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// AgentService is a service as /v1/agent/services shows it.
type agentServiceJSON struct {
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	Weights           Weights
	EnableTagOverride bool
	ContentHash       string `json:",omitempty"`
	Datacenter        string
}

func (s *State) serviceJSON(sv *Service) *agentServiceJSON {
	out := &agentServiceJSON{ID: sv.ID, Service: sv.Service, Tags: sv.Tags, Meta: sv.Meta, Port: sv.Port,
		Address: sv.Address, Weights: sv.Weights, EnableTagOverride: sv.EnableTagOverride, Datacenter: s.datacenter()}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.Meta == nil {
		out.Meta = map[string]string{}
	}
	return out
}

// checkJSON is a check as /v1/agent/checks shows it (Consul's HealthCheck).
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
	Definition  struct{}
	CreateIndex uint64
	ModifyIndex uint64
}

func (s *State) checkJSON(c *Check) *checkJSON {
	out := &checkJSON{Node: s.opts.Node.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Notes: c.Notes,
		Output: c.Output, ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: c.ServiceTags,
		Type: c.Type, Interval: c.Interval, Timeout: c.Timeout}
	if out.ServiceTags == nil {
		out.ServiceTags = []string{}
	}
	return out
}

// filterOf reads ?filter, Consul's boolean expression over the listed
// objects; nil keeps everything.
func filterOf(r *http.Request) (func(v any) (bool, error), error) {
	f := r.URL.Query().Get("filter")
	if f == "" {
		return func(any) (bool, error) { return true, nil }, nil
	}
	ev, err := bexpr.CreateEvaluator(f)
	if err != nil {
		return nil, badRequest("Failed to create boolean expression evaluator: %v", err)
	}
	return ev.Evaluate, nil
}

func (s *State) serveServices(w http.ResponseWriter, r *http.Request) error {
	keep, err := filterOf(r)
	if err != nil {
		return err
	}
	out := map[string]*agentServiceJSON{}
	az := authzOf(r)
	for _, sv := range s.Services() {
		if !az.ServiceRead(sv.Service) {
			continue
		}
		js := s.serviceJSON(&sv)
		ok, err := keep(js)
		if err != nil {
			return badRequest("%v", err)
		}
		if ok {
			out[sv.ID] = js
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *State) serveChecks(w http.ResponseWriter, r *http.Request) error {
	keep, err := filterOf(r)
	if err != nil {
		return err
	}
	out := map[string]*checkJSON{}
	az := authzOf(r)
	for _, c := range s.Checks() {
		if c.ServiceID == "" && !az.NodeRead(s.opts.Node.Node) || c.ServiceID != "" && !az.ServiceRead(c.ServiceName) {
			continue
		}
		js := s.checkJSON(&c)
		ok, err := keep(js)
		if err != nil {
			return badRequest("%v", err)
		}
		if ok {
			out[c.CheckID] = js
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *State) serveService(w http.ResponseWriter, r *http.Request, rest string) error {
	switch {
	case rest == "register":
		return put(r, func() error {
			sv, own, err := s.decodeService(r)
			if err != nil {
				return err
			}
			if err := need(authzOf(r).ServiceWrite(sv.Service)); err != nil {
				return err
			}
			if old, ok := s.Service(sv.ID); ok && old.Service != sv.Service {
				if err := need(authzOf(r).ServiceWrite(old.Service)); err != nil {
					return err
				}
			}
			if err := s.AddService(sv, own); err != nil {
				return err
			}
			return s.wait(r, w)
		})
	case strings.HasPrefix(rest, "deregister/"):
		return put(r, func() error {
			if err := s.serviceWrite(r, strings.TrimPrefix(rest, "deregister/")); err != nil {
				return err
			}
			if err := s.RemoveService(strings.TrimPrefix(rest, "deregister/")); err != nil {
				return err
			}
			return s.wait(r, w)
		})
	case strings.HasPrefix(rest, "maintenance/"):
		return put(r, func() error {
			id := strings.TrimPrefix(rest, "maintenance/")
			if id == "" {
				return badRequest("Missing service ID")
			}
			enable, reason, err := maintParams(r)
			if err != nil {
				return err
			}
			if err := s.serviceWrite(r, id); err != nil {
				return err
			}
			if err := s.SetServiceMaintenance(id, enable, reason); err != nil {
				return err
			}
			return s.wait(r, w)
		})
	case rest != "":
		return get(r, func() error {
			sv, ok := s.Service(rest)
			if !ok {
				return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("unknown service ID: %s", rest)}
			}
			if err := need(authzOf(r).ServiceRead(sv.Service)); err != nil {
				return err
			}
			out := s.serviceJSON(&sv)
			b, _ := json.Marshal(out)
			sum := sha256.Sum256(b)
			out.ContentHash = fmt.Sprintf("%x", sum[:8])
			w.Header().Set("X-Consul-ContentHash", out.ContentHash)
			writeJSON(w, http.StatusOK, out)
			return nil
		})
	}
	return &httpError{code: http.StatusNotFound, msg: "404 page not found"}
}

func maintParams(r *http.Request) (bool, string, error) {
	q := r.URL.Query()
	v, ok := q["enable"]
	if !ok || len(v) == 0 || v[0] == "" {
		return false, "", badRequest("Missing value for enable")
	}
	enable, err := strconv.ParseBool(v[0])
	if err != nil {
		return false, "", badRequest("Invalid value for enable: %q", v[0])
	}
	return enable, q.Get("reason"), nil
}

func (s *State) serveCheck(w http.ResponseWriter, r *http.Request, rest string) error {
	verb, id, _ := strings.Cut(rest, "/")
	status := map[string]string{"pass": StatusPassing, "warn": StatusWarning, "fail": StatusCritical}[verb]
	return put(r, func() error {
		switch {
		case verb == "register":
			c, err := s.decodeCheck(r)
			if err != nil {
				return err
			}
			if err := s.checkWrite(r, c.ServiceID); err != nil {
				return err
			}
			if err := s.AddCheck(c); err != nil {
				return err
			}
		case id == "" && (verb == "deregister" || verb == "update" || status != ""):
			return badRequest("Missing check ID")
		case (verb == "deregister" || verb == "update" || status != "") && s.checkWriteByID(r, id) != nil:
			return errPermissionDenied
		case verb == "deregister":
			if err := s.RemoveCheck(id); err != nil {
				return err
			}
		case status != "":
			if err := s.UpdateTTL(id, status, r.URL.Query().Get("note")); err != nil {
				return err
			}
		case verb == "update":
			m, err := readObject(r)
			if err != nil {
				return err
			}
			st, _ := m["Status"].(string)
			out, _ := m["Output"].(string)
			if !validStatus(st) {
				return badRequest("Invalid check status: '%s'", st)
			}
			if err := s.UpdateTTL(id, st, out); err != nil {
				return err
			}
		default:
			return &httpError{code: http.StatusNotFound, msg: "404 page not found"}
		}
		return s.wait(r, w)
	})
}

// healthInfoJSON is an element of /v1/agent/health/service/name/:s
// (Consul's AgentServiceChecksInfo).
type healthInfoJSON struct {
	AggregatedStatus string
	Service          *agentServiceJSON
	Checks           []*checkJSON
}

// serveHealth answers /v1/agent/health/service/name/:name or /id/:id: the
// status of the local instances from their checks and the node's, 200
// passing, 429 warning, 503 critical or in maintenance, 404 none.
func (s *State) serveHealth(w http.ResponseWriter, r *http.Request, name, id string) error {
	all := s.Checks()
	var out []*healthInfoJSON
	worst := ""
	for _, sv := range s.Services() {
		if (id != "" && sv.ID != id) || (name != "" && sv.Service != name) {
			continue
		}
		if !authzOf(r).ServiceRead(sv.Service) {
			return errPermissionDenied
		}
		info := &healthInfoJSON{Service: s.serviceJSON(&sv), Checks: []*checkJSON{}}
		for _, c := range all {
			if c.ServiceID == sv.ID || c.ServiceID == "" {
				info.Checks = append(info.Checks, s.checkJSON(&c))
			}
		}
		info.AggregatedStatus = aggregate(info.Checks)
		if rank(info.AggregatedStatus) > rank(worst) {
			worst = info.AggregatedStatus
		}
		out = append(out, info)
	}
	text := r.URL.Query().Get("format") == "text"
	if len(out) == 0 {
		msg := fmt.Sprintf("ServiceName %s Not Found", name)
		if id != "" {
			msg = fmt.Sprintf("ServiceId %s not found", id)
		}
		if text {
			return &httpError{code: http.StatusNotFound, msg: msg}
		}
		writeJSON(w, http.StatusNotFound, msg)
		return nil
	}
	code := map[string]int{StatusPassing: http.StatusOK, StatusWarning: http.StatusTooManyRequests}[worst]
	if code == 0 {
		code = http.StatusServiceUnavailable
	}
	if text {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(worst))
		return nil
	}
	if id != "" {
		writeJSON(w, code, out[0])
		return nil
	}
	writeJSON(w, code, out)
	return nil
}

func aggregate(cs []*checkJSON) string {
	status := StatusPassing
	for _, c := range cs {
		if c.Type == "maintenance" || c.CheckID == NodeMaintCheckID {
			return "maintenance"
		}
		if rank(c.Status) > rank(status) {
			status = c.Status
		}
	}
	return status
}

func rank(status string) int {
	switch status {
	case StatusPassing:
		return 1
	case StatusWarning:
		return 2
	case StatusCritical:
		return 3
	case "maintenance":
		return 4
	}
	return 0
}
