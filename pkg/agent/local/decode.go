package local

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

// The bodies of /v1/agent/service/register and /v1/agent/check/register
// are Consul's AgentServiceRegistration and AgentCheckRegistration: the
// same fields as a config file's service and check, in CamelCase, which
// package config reads. So a definition means the same from a file and
// from the API, and is validated once.

const maxBody = 512 * 1024

// httpError is an error with Consul's status and message.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// readObject reads a JSON object body.
func readObject(r *http.Request) (map[string]any, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, badRequest("Request decode failed: %v", err)
	}
	if len(body) > maxBody {
		return nil, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("Request body too large, max size: %d bytes", maxBody)}
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, badRequest("Request decode failed: %v", err)
	}
	if m == nil {
		m = map[string]any{}
	}
	dropEmpty(m)
	return m, nil
}

// dropEmpty removes null values, and the empty strings of fields clients
// send unset (Kind, Namespace, Partition ...), at every level.
func dropEmpty(m map[string]any) {
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			delete(m, k)
		case string:
			if v == "" && ignorableEmpty[strings.ToLower(k)] {
				delete(m, k)
			}
		case map[string]any:
			dropEmpty(v)
		case []any:
			for _, e := range v {
				if o, ok := e.(map[string]any); ok {
					dropEmpty(o)
				}
			}
		}
	}
}

var ignorableEmpty = map[string]bool{"kind": true, "namespace": true, "partition": true, "socketpath": true, "peername": true}

// field returns a key's value, matched case-insensitively.
func field(m map[string]any, name string) (string, any) {
	for k, v := range m {
		if strings.EqualFold(strings.ReplaceAll(k, "_", ""), name) {
			return k, v
		}
	}
	return "", nil
}

func (s *State) parseOpts() config.Options {
	return config.Options{EnableScriptChecks: s.opts.EnableScriptChecks}
}

// decodeService reads an AgentServiceRegistration.
func (s *State) decodeService(r *http.Request) (Service, []config.Check, error) {
	m, err := readObject(r)
	if err != nil {
		return Service{}, nil, err
	}
	if _, name := field(m, "name"); name == nil || name == "" {
		return Service{}, nil, badRequest("Missing service name")
	}
	body, _ := json.Marshal(map[string]any{"service": m})
	defs, err := config.ParseFile("request body", body, s.parseOpts())
	if err != nil {
		return Service{}, nil, badRequest("Invalid service: %v", err)
	}
	d := &defs.Services[0]
	return serviceFromConfig(d), d.Checks, nil
}

// decodeCheck reads an AgentCheckRegistration.
func (s *State) decodeCheck(r *http.Request) (config.Check, error) {
	m, err := readObject(r)
	if err != nil {
		return config.Check{}, err
	}
	if _, name := field(m, "name"); name == nil || name == "" {
		return config.Check{}, badRequest("Missing check name")
	}
	if _, st := field(m, "status"); st != nil && st != "" && !validStatus(fmt.Sprint(st)) {
		return config.Check{}, badRequest("Bad check status")
	}
	// The service is the agent's to look up, not the file's.
	key, sid := field(m, "serviceid")
	if key != "" {
		delete(m, key)
	}
	body, _ := json.Marshal(map[string]any{"check": m})
	defs, err := config.ParseFile("request body", body, s.parseOpts())
	if err != nil {
		return config.Check{}, badRequest("Invalid check: %v", err)
	}
	c := defs.Checks[0]
	if sid != nil {
		c.ServiceID = fmt.Sprint(sid)
	}
	return c, nil
}

func validStatus(s string) bool {
	return s == StatusPassing || s == StatusWarning || s == StatusCritical
}
