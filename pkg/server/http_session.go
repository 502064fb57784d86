package server

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// The session endpoints, as Consul's: create, destroy and renew go to the
// leader (renew resets the leader's TTL timer, see session_ttl.go, and
// writes nothing); info, list and node are blocking reads on the sessions
// table's index.

// Consul's session limits.
const (
	defaultLockDelay = 15 * time.Second
	maxLockDelay     = 60 * time.Second
	sessionTTLMax    = 24 * time.Hour
	// sessionTTLMultiplier: the leader destroys a session that was not
	// renewed for this many times its TTL, as Consul.
	sessionTTLMultiplier = 2
)

// sessionRequest is the body of PUT /v1/session/create. Checks and
// NodeChecks are pointers to tell an absent list from an empty one.
type sessionRequest struct {
	Name          string
	Node          string
	LockDelay     json.RawMessage
	Behavior      string
	TTL           string
	Checks        *[]string
	NodeChecks    *[]string
	ServiceChecks []state.ServiceCheck
}

// parseLockDelay reads a LockDelay as Consul does: a duration string, or a
// number taken as seconds below 1000 and as nanoseconds from there on.
func parseLockDelay(raw json.RawMessage) (time.Duration, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return defaultLockDelay, nil
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		d, err := time.ParseDuration(str)
		if err != nil {
			return 0, badRequest(fmt.Sprintf("Request decode failed: LockDelay %q: %v", str, err))
		}
		return d, nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, badRequest("Request decode failed: LockDelay: " + err.Error())
	}
	d := time.Duration(n)
	if d < 1000 {
		d *= time.Second
	}
	return d, nil
}

// newSession builds a session from a create body with Consul's defaults
// (its HTTP layer's, then its Session.Apply's checks).
func (s *Server) newSession(req *sessionRequest) (*state.Session, error) {
	sess := &state.Session{Name: req.Name, Node: req.Node, Behavior: req.Behavior, TTL: req.TTL,
		ServiceChecks: req.ServiceChecks}
	if sess.Node == "" {
		sess.Node = s.opts.NodeName
	}
	var err error
	if sess.LockDelay, err = parseLockDelay(req.LockDelay); err != nil {
		return nil, err
	}
	sess.LockDelay = min(max(sess.LockDelay, 0), maxLockDelay)
	// Consul's fixupEmptySessionChecks: Checks and NodeChecks both default
	// to serfHealth; an empty Checks or NodeChecks means no node check.
	checks, nodeChecks := []string{serfCheckID}, []string{serfCheckID}
	if req.Checks != nil {
		checks = *req.Checks
	}
	if req.NodeChecks != nil {
		nodeChecks = *req.NodeChecks
	}
	switch {
	case len(checks) == 0:
		nodeChecks = nil
	case len(checks) == 1 && checks[0] == serfCheckID, len(nodeChecks) == 0:
		checks = nil
	}
	for _, c := range checks { // the deprecated Checks are node checks
		if !slices.Contains(nodeChecks, c) {
			nodeChecks = append(nodeChecks, c)
		}
	}
	if len(nodeChecks) > 0 {
		sess.NodeChecks = nodeChecks
	}
	switch sess.Behavior {
	case "":
		sess.Behavior = state.BehaviorRelease
	case state.BehaviorRelease, state.BehaviorDelete:
	default:
		return nil, consulError(fmt.Sprintf("Invalid Behavior setting '%s'", sess.Behavior))
	}
	if sess.TTL != "" {
		ttl, err := time.ParseDuration(sess.TTL)
		if err != nil {
			return nil, consulError(fmt.Sprintf("Session TTL '%s' invalid: %v", sess.TTL, err))
		}
		if ttl != 0 && (ttl < s.opts.SessionTTLMin || ttl > sessionTTLMax) {
			return nil, consulError(fmt.Sprintf("Invalid Session TTL '%d', must be between [%v=%v]", ttl, s.opts.SessionTTLMin, sessionTTLMax))
		}
	}
	id, err := newUUID()
	if err != nil {
		return nil, err
	}
	sess.ID = id
	return sess, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// sessionTTL returns a session's TTL, 0 for none.
func sessionTTL(sess *state.Session) time.Duration {
	d, _ := time.ParseDuration(sess.TTL)
	return d
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/v1/session/")
	op, arg, _ := strings.Cut(rest, "/")
	switch op {
	case "create", "destroy", "renew":
		if r.Method != http.MethodPut {
			return methodNotAllowed(r, "PUT")
		}
		if err := s.checkScope(r.URL.Query()); err != nil {
			return err
		}
		if op != "create" && arg == "" {
			return badRequest("Missing session")
		}
		if !s.IsLeader() {
			s.forward(w, r)
			return nil
		}
		switch op {
		case "create":
			return s.sessionCreate(w, r)
		}
		if err := s.sessionAllowed(r, arg); err != nil {
			return err
		}
		if op == "destroy" {
			return s.sessionDestroy(w, arg)
		}
		return s.sessionRenew(w, arg)
	case "info", "node", "list":
		if r.Method != http.MethodGet {
			return methodNotAllowed(r, "GET")
		}
		if op != "list" && arg == "" {
			if op == "info" {
				return badRequest("Missing session")
			}
			return badRequest("Missing node name")
		}
		return s.sessionRead(w, r, op, arg)
	}
	return &httpError{code: http.StatusNotFound, msg: "unknown session endpoint " + r.URL.Path}
}

func (s *Server) sessionCreate(w http.ResponseWriter, r *http.Request) error {
	var req sessionRequest
	if r.ContentLength != 0 {
		body, err := readBody(r, maxCatalogBody)
		if err != nil {
			return badRequest("Request decode failed: " + err.Error())
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				return badRequest("Request decode failed: " + err.Error())
			}
		}
	}
	if req.Node == "" {
		req.Node = askedNode(r, s.opts.NodeName)
	}
	sess, err := s.newSession(&req)
	if err != nil {
		return err
	}
	az, err := s.authz(r)
	if err != nil {
		return err
	}
	if !az.SessionWrite(sess.Node) {
		return errPermissionDenied
	}
	cmd, err := encodeSession(&sessionCommand{Op: sessionCreate, Session: sess})
	if err != nil {
		return err
	}
	if _, err := s.apply(cmd); err != nil {
		return err
	}
	if ttl := sessionTTL(sess); ttl > 0 {
		s.sessionTimers.reset(s, sess.ID, ttl)
	}
	writeJSON(w, http.StatusOK, struct{ ID string }{sess.ID})
	return nil
}

// destroySession invalidates a session through Raft.
func (s *Server) destroySession(id string) error {
	cmd, err := encodeSession(&sessionCommand{Op: sessionDestroy, ID: id})
	if err != nil {
		return err
	}
	_, err = s.apply(cmd)
	s.sessionTimers.clear(id)
	return err
}

func (s *Server) sessionDestroy(w http.ResponseWriter, id string) error {
	if err := s.destroySession(id); err != nil {
		return err
	}
	writeRawJSON(w, http.StatusOK, []byte("true"))
	return nil
}

func (s *Server) sessionRenew(w http.ResponseWriter, id string) error {
	if !s.ready.Load() {
		return errNoLeader
	}
	_, sess := s.store.Read().SessionGet(nil, id)
	if sess == nil {
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("Session id '%s' not found", id)}
	}
	if ttl := sessionTTL(sess); ttl > 0 {
		s.sessionTimers.reset(s, sess.ID, ttl)
	}
	return writeSessions(w, []*state.Session{sess})
}

func (s *Server) sessionRead(w http.ResponseWriter, r *http.Request, op, arg string) error {
	o, err := s.parseQuery(r.URL.Query())
	if err != nil {
		return err
	}
	if s.mustForward(o) {
		s.forward(w, r)
		return nil
	}
	var out []*state.Session
	idx, err := s.blockingQuery(r, o, func(ws memdb.WatchSet, rt *state.ReadTxn) uint64 {
		var idx uint64
		switch op {
		case "info":
			var sess *state.Session
			idx, sess = rt.SessionGet(ws, arg)
			out = out[:0]
			if sess != nil {
				out = append(out, sess)
			}
		case "node":
			idx, out = rt.NodeSessions(ws, arg)
		default:
			idx, out = rt.Sessions(ws)
		}
		return idx
	})
	if err != nil {
		return err
	}
	az, err := s.authz(r)
	if err != nil {
		return err
	}
	out, filtered := filterBy(out, func(sess *state.Session) bool { return az.SessionRead(sess.Node) })
	s.setMeta(w, idx, true)
	if filtered {
		setFiltered(w)
	}
	return writeSessions(w, out)
}

// sessionAllowed checks a destroy or renew: session write on the
// session's node. A missing session is left to the operation.
func (s *Server) sessionAllowed(r *http.Request, id string) error {
	az, err := s.authz(r)
	if err != nil {
		return err
	}
	if _, sess := s.store.Read().SessionGet(nil, id); sess != nil && !az.SessionWrite(sess.Node) {
		return errPermissionDenied
	}
	return nil
}

// sessionJSON is a session in Consul's wire format.
type sessionJSON struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	NodeChecks    []string
	ServiceChecks []state.ServiceCheck
	CreateIndex   uint64
	ModifyIndex   uint64
}

func writeSessions(w http.ResponseWriter, list []*state.Session) error {
	out := make([]sessionJSON, 0, len(list))
	for _, s := range list {
		out = append(out, sessionJSON(*s))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// headerNode names the node whose agent a client asked: a kvx agent that
// proxies a request to the servers sets it, so that the answers that
// depend on "the agent's node" (a session's default Node, the events an
// agent lists) are its node's, as with Consul.
const headerNode = "X-Kvx-Node"

// askedNode is the node of the agent the client asked: the proxying agent's
// (headerNode), else the server that forwarded the request here, else this
// server's own (def).
func askedNode(r *http.Request, def string) string {
	if n := r.Header.Get(headerNode); n != "" {
		return n
	}
	if n := r.Header.Get(headerForwarded); n != "" {
		return n
	}
	return def
}
