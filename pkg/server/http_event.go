package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/kvxproject/kvx/pkg/acl"
	"github.com/kvxproject/kvx/pkg/server/state"
)

// User events (see state/event.go): fired through Raft on the leader, and
// listed by every server from its own state, filtered for its own node, with
// Consul's index (derived from the newest listed event's ID).

// userEventSizeLimit is Serf's cap on an event's name plus payload.
const userEventSizeLimit = 512

// eventJSON is an event in Consul's wire format.
type eventJSON struct {
	ID            string
	Name          string
	Payload       []byte
	NodeFilter    string
	ServiceFilter string
	TagFilter     string
	Version       int
	LTime         uint64
}

func (s *Server) handleEventFire(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed(r, "PUT")
	}
	q := r.URL.Query()
	if err := s.checkScope(q); err != nil {
		return err
	}
	e := state.Event{Name: strings.TrimPrefix(r.URL.Path, "/v1/event/fire/"), Version: 1,
		NodeFilter: q.Get("node"), ServiceFilter: q.Get("service"), TagFilter: q.Get("tag")}
	if e.Name == "" {
		return badRequest("Missing name")
	}
	if r.ContentLength > userEventSizeLimit {
		return eventTooLarge()
	}
	body, err := readBody(r, userEventSizeLimit)
	if err != nil {
		return badRequest("read body: " + err.Error())
	}
	if len(body) > 0 {
		e.Payload = body
	}
	if err := validateEvent(&e); err != nil {
		return err
	}
	if !s.IsLeader() { // hand the body we read to the leader, which checks the token
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		s.forward(w, r)
		return nil
	}
	if err := s.need(r, func(a *acl.Authorizer) bool { return a.EventWrite(e.Name) }); err != nil {
		return err
	}
	if e.ID, err = newUUID(); err != nil {
		return err
	}
	cmd, err := encodeEvent(&e)
	if err != nil {
		return err
	}
	if _, err := s.apply(cmd); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, eventJSON{ID: e.ID, Name: e.Name, Payload: e.Payload, NodeFilter: e.NodeFilter,
		ServiceFilter: e.ServiceFilter, TagFilter: e.TagFilter, Version: e.Version})
	return nil
}

func eventTooLarge() error {
	return consulError(fmt.Sprintf("user event exceeds configured limit of %d bytes before encoding", userEventSizeLimit))
}

// validateEvent refuses what Consul's validateUserEventParams refuses, and
// an event over Serf's size limit.
func validateEvent(e *state.Event) error {
	if len(e.Name)+len(e.Payload) > userEventSizeLimit {
		return eventTooLarge()
	}
	if e.TagFilter != "" && e.ServiceFilter == "" {
		return consulError("Cannot provide tag filter without service filter")
	}
	for _, f := range []struct{ what, re string }{{"node", e.NodeFilter}, {"service", e.ServiceFilter}, {"tag", e.TagFilter}} {
		if f.re == "" {
			continue
		}
		if _, err := regexp.Compile(f.re); err != nil {
			return consulError(fmt.Sprintf("Invalid %s filter: %v", f.what, err))
		}
	}
	return nil
}

// EventMatches reports whether an event is for a node with these services,
// by Consul's rules: its node filter matches the node's name, and its
// service filter one of the services (whose tags, with a tag filter, must
// include one that matches it). Filters that do not compile match nothing.
func EventMatches(e *state.Event, node string, services []*state.Service) bool {
	if e.NodeFilter != "" {
		re, err := regexp.Compile(e.NodeFilter)
		if err != nil || !re.MatchString(node) {
			return false
		}
	}
	if e.ServiceFilter == "" {
		return true
	}
	re, err := regexp.Compile(e.ServiceFilter)
	if err != nil {
		return false
	}
	var tagRE *regexp.Regexp
	if e.TagFilter != "" {
		if tagRE, err = regexp.Compile(e.TagFilter); err != nil {
			return false
		}
	}
	for _, svc := range services {
		if !re.MatchString(svc.Service) {
			continue
		}
		if tagRE == nil {
			return true
		}
		for _, t := range svc.Tags {
			if tagRE.MatchString(t) {
				return true
			}
		}
	}
	return false
}

// eventIndex is Consul's uuidToUint64: the index of an event list is made
// from its newest event's ID.
func eventIndex(id string) uint64 {
	if len(id) != 36 {
		return 1
	}
	lower := id[0:8] + id[9:13] + id[14:18]
	upper := id[19:23] + id[24:36]
	lo, _ := strconv.ParseUint(lower, 16, 64)
	hi, _ := strconv.ParseUint(upper, 16, 64)
	return lo ^ hi
}

func (s *Server) handleEventList(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(r, "GET")
	}
	q := r.URL.Query()
	o, err := s.parseQuery(q)
	if err != nil {
		return err
	}
	// Events are this node's: answered from its own state, as an agent's.
	o.stale, o.consistent = true, false
	name := q.Get("name")
	// An agent that proxies the list asks for its own node's view (kvx's own
	// header or parameter; Consul's agents each answer for themselves).
	node := r.Header.Get(headerNode)
	if n := q.Get("for-node"); n != "" {
		node = n
	}
	if node == "" {
		node = s.opts.NodeName
	}
	var out []eventJSON
	filtered := false
	idx, err := s.blockingQuery(r, o, func(ws memdb.WatchSet, rt *state.ReadTxn) uint64 {
		out, filtered = out[:0], false
		az, err := s.authz(r) // as resolved for this wake-up
		if err != nil {
			return 1
		}
		events := rt.Events(ws)
		if len(events) == 0 {
			return 1
		}
		_, _, services := rt.NodeServices(ws, node)
		for _, e := range events {
			if (name != "" && e.Name != name) || !EventMatches(e, node, services) {
				continue
			}
			if !az.EventRead(e.Name) {
				filtered = true
				continue
			}
			out = append(out, eventJSON(*e))
		}
		if len(out) == 0 {
			return 1 // not 0: a watch would spin
		}
		return eventIndex(out[len(out)-1].ID)
	})
	if err != nil {
		return err
	}
	w.Header()["X-Consul-Index"] = []string{strconv.FormatUint(idx, 10)}
	if filtered {
		setFiltered(w)
	}
	if out == nil {
		out = []eventJSON{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
