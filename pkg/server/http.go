package server

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// Consul's limits.
const (
	maxValueSize = 512 * 1024 // kv_max_value_size, inclusive
	maxTxnBody   = 512 * 1024 // txn_max_req_len
	maxTxnOps    = 128
	defaultWait  = 5 * time.Minute
	maxWait      = 10 * time.Minute
)

// httpError is an error with the HTTP status and the plain-text body Consul
// answers with.
type httpError struct {
	code  int
	msg   string
	allow string // for 405
}

func (e *httpError) Error() string { return e.msg }

func badRequest(msg string) error { return &httpError{code: http.StatusBadRequest, msg: msg} }

// writeError is the one place errors become HTTP statuses.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.err = err
	}
	code, msg := http.StatusInternalServerError, err.Error()
	var he *httpError
	switch {
	case errors.As(err, &he):
		code, msg = he.code, he.msg
		if he.allow != "" {
			w.Header().Set("Allow", he.allow)
		}
	case errors.Is(err, state.ErrCatalog): // a refused catalog write: nothing changed
		code = http.StatusBadRequest
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		msg = "No cluster leader"
	case errors.Is(err, context.Canceled):
		return // the client went away
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, code, b)
}

func writeRawJSON(w http.ResponseWriter, code int, b []byte) {
	w.Header()["Content-Type"] = []string{"application/json"}
	writeBody(w, code, b)
}

// writeBody answers with b and its length (without the length, net/http
// sends anything over 2 kB chunked, and the client cannot size its
// buffer), gzipped for a client that accepts it (http_gzip.go).
func writeBody(w http.ResponseWriter, code int, b []byte) {
	writeEncoded(w, code, &encoded{body: b}, gzip.BestSpeed)
}

// readBody reads a request body of at most limit bytes; a longer one comes
// back with limit+1 bytes for the caller to refuse. A body that says its
// length is read into one buffer of that size.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= limit {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(io.LimitReader(r.Body, limit+1))
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handler is the public HTTP API.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	kv := s.route(mux, "/v1/kv/", "kv", s.handleKV)
	s.route(mux, "/v1/txn", "txn", s.handleTxn)
	s.route(mux, "/v1/catalog/register", "catalog.register", s.handleCatalogRegister)
	s.route(mux, "/v1/catalog/deregister", "catalog.deregister", s.handleCatalogDeregister)
	s.route(mux, "/v1/catalog/datacenters", "catalog.datacenters", s.handleCatalogDatacenters)
	s.route(mux, "/v1/catalog/nodes", "catalog.nodes", s.handleCatalogNodes)
	s.route(mux, "/v1/catalog/services", "catalog.services", s.handleCatalogServices)
	s.route(mux, "/v1/catalog/service/", "catalog.service", s.handleCatalogService)
	s.route(mux, "/v1/catalog/node/", "catalog.node", s.handleCatalogNode)
	s.route(mux, "/v1/health/service/", "health.service", s.handleHealthService)
	s.route(mux, "/v1/health/checks/", "health.checks", s.handleHealthChecks)
	s.route(mux, "/v1/health/node/", "health.node", s.handleHealthNode)
	s.route(mux, "/v1/health/state/", "health.state", s.handleHealthState)
	s.route(mux, "/v1/session/", "session", s.handleSession)
	s.route(mux, "/v1/event/fire/", "event.fire", s.handleEventFire)
	s.route(mux, "/v1/event/list", "event.list", s.handleEventList)
	s.route(mux, "/v1/kvx/heartbeat/", "kvx.heartbeat", s.handleHeartbeat)
	s.route(mux, "/v1/status/leader", "status.leader", s.handleStatusLeader)
	s.route(mux, "/v1/status/peers", "status.peers", s.handleStatusPeers)
	s.route(mux, "/v1/agent/self", "agent.self", s.handleAgentSelf)
	s.route(mux, "/v1/agent/metrics", "agent.metrics", s.handleAgentMetrics)
	s.route(mux, "/v1/agent/members", "agent.members", s.handleAgentMembers)
	s.route(mux, "/v1/agent/services", "agent.services", s.handleAgentLocal)
	s.route(mux, "/v1/agent/checks", "agent.checks", s.handleAgentLocal)
	s.route(mux, "/v1/agent/service/", "agent.service", s.handleAgentLocal)
	s.route(mux, "/v1/agent/check/", "agent.check", s.handleAgentLocal)
	s.route(mux, "/v1/agent/health/service/", "agent.health", s.handleAgentLocal)
	s.route(mux, "/v1/agent/maintenance", "agent.maintenance", s.handleAgentLocal)
	s.route(mux, "/v1/acl/", "acl", s.handleACL)
	s.route(mux, "/v1/kvx/acl/authorizer", "kvx.acl.authorizer", s.handleKvxAuthorizer)
	s.route(mux, "/v1/operator/raft/configuration", "operator.raft.configuration", s.handleRaftConfiguration)
	return s.logRequests(func(w http.ResponseWriter, r *http.Request) {
		// ServeMux would clean a ".." segment away with a redirect, so that a
		// PUT to a/../b lands on b; a key must never be rewritten like that.
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			if err := checkKey(kvKey(r)); err != nil {
				s.writeError(w, err)
				return
			}
			kv(w, r) // what the mux would pick, without its matching (a fleet's every request)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) route(mux *http.ServeMux, pattern, endpoint string, h handlerFunc) http.HandlerFunc {
	rs := newRouteStats(endpoint)
	s.routeStats = append(s.routeStats, rs)
	f := func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.requests.Add(1)
		r = s.withACL(r)
		if err := h(w, r); err != nil {
			s.writeError(w, err)
		}
		rs.observe(r.Method, time.Since(start))
	}
	mux.HandleFunc(pattern, f)
	return f
}

func methodNotAllowed(r *http.Request, allow string) error {
	return &httpError{code: http.StatusMethodNotAllowed, msg: "method " + r.Method + " not allowed", allow: allow}
}

// queryOpts are the query parameters every read takes.
type queryOpts struct {
	stale, consistent bool
	minIndex          uint64
	wait              time.Duration
}

func has(q url.Values, name string) bool { _, ok := q[name]; return ok }

func (s *Server) parseQuery(q url.Values) (queryOpts, error) {
	var o queryOpts
	o.stale, o.consistent = has(q, "stale"), has(q, "consistent")
	if o.stale && o.consistent {
		return o, badRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
	}
	if err := s.checkScope(q); err != nil {
		return o, err
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return o, badRequest("Invalid wait time")
		}
		o.wait = d
	}
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, badRequest("Invalid index")
		}
		o.minIndex = n
	}
	return o, nil
}

// checkScope refuses datacenters and namespaces this server is not.
func (s *Server) checkScope(q url.Values) error {
	if dc := q.Get("dc"); dc != "" && dc != s.opts.Datacenter {
		return &httpError{code: http.StatusInternalServerError, msg: "No path to datacenter"}
	}
	if ns := q.Get("ns"); ns != "" && ns != "default" {
		return badRequest(`Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature`)
	}
	return nil
}

// mustForward reports whether a read must be answered by the leader and this
// node is not it.
func (s *Server) mustForward(o queryOpts) bool {
	return !o.stale && s.raft.State() != raft.Leader
}

// blockingQuery runs query until its index differs from o.minIndex or the
// wait runs out, and returns the index of the last answer. Without an index it
// runs once. Consul returns when the index is greater; kvx also returns at once
// when it is smaller (after a snapshot restore or a tombstone reap), so a
// client can reset instead of waiting out its timeout.
func (s *Server) blockingQuery(r *http.Request, o queryOpts, query func(ws memdb.WatchSet, rt *state.ReadTxn) uint64) (uint64, error) {
	if !o.stale {
		if err := s.waitReady(r); err != nil {
			return 0, err
		}
	}
	if o.consistent {
		if err := s.raft.VerifyLeader().Error(); err != nil {
			return 0, err
		}
	}
	if o.minIndex == 0 {
		rt := s.store.Read()
		if err := s.reauthorize(r, rt); err != nil {
			return 0, err
		}
		return query(nil, rt), nil
	}
	wait := effectiveWait(o.wait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	s.blocking.Add(1) // reported every second by reportStats, not per query
	defer s.blocking.Add(-1)
	for {
		rt := s.store.Read()
		ws := memdb.NewWatchSet()
		ws.Add(rt.AbandonCh())
		ws.Add(s.shutdown)
		if s.opts.ACL.Enabled { // a token's change wakes the query, which resolves it again
			rt.ACLIndex(ws)
			if err := s.reauthorize(r, rt); err != nil {
				return 0, err
			}
		}
		idx := query(ws, rt)
		if idx != o.minIndex {
			return idx, nil
		}
		if !waitWatch(ws, r.Context(), timer.C) {
			if r.Context().Err() != nil {
				return idx, r.Context().Err()
			}
			return idx, nil // the wait ran out: the unchanged answer
		}
		s.wakeups.Add(1)
		select {
		case <-s.shutdown: // the unchanged answer now, so the server stops at once
			return idx, nil
		default:
		}
		if o.consistent {
			if err := s.raft.VerifyLeader().Error(); err != nil {
				return 0, err
			}
		}
	}
}

// waitWatch waits until a channel of ws fires (true), or the request ends
// or the timer fires (false). A KV or catalog query's set holds a handful
// of channels: a direct select over them costs a fraction of memdb's
// 32-case one and needs no context of its own. Larger sets go to memdb.
func waitWatch(ws memdb.WatchSet, ctx context.Context, timer <-chan time.Time) bool {
	var chs [5]<-chan struct{} // nil ones never fire
	n := 0
	for ch := range ws {
		if n == len(chs) {
			ws.Add(ctx.Done())
			return !ws.Watch(timer) && ctx.Err() == nil
		}
		chs[n] = ch
		n++
	}
	select {
	case <-chs[0]:
	case <-chs[1]:
	case <-chs[2]:
	case <-chs[3]:
	case <-chs[4]:
	case <-ctx.Done():
		return false
	case <-timer:
		return false
	}
	return true
}

// effectiveWait applies Consul's rules to a ?wait: 5 minutes when absent, at
// most 10, plus a random jitter of at most wait/16 so that many clients that
// started together do not come back together.
func effectiveWait(wait time.Duration) time.Duration {
	if wait == 0 {
		wait = defaultWait
	}
	if wait > maxWait {
		wait = maxWait
	}
	return wait + rand.N(wait/16+1)
}

// setMeta writes the three headers every read carries.
func (s *Server) setMeta(w http.ResponseWriter, index uint64, withIndex bool) {
	h := w.Header()
	if withIndex {
		if index == 0 {
			index = 1
		}
		h["X-Consul-Index"] = []string{strconv.FormatUint(index, 10)}
	}
	leader, _ := s.raft.LeaderWithID()
	h["X-Consul-Knownleader"] = headerFalse
	if leader != "" {
		h["X-Consul-Knownleader"] = headerTrue
	}
	if ms := s.lastContactMS(); ms == 0 {
		h["X-Consul-Lastcontact"] = headerZero
	} else {
		h["X-Consul-Lastcontact"] = []string{strconv.FormatInt(ms, 10)}
	}
}

// Header values every answer carries, shared (a header's value slice is
// never modified once set).
var (
	headerTrue  = []string{"true"}
	headerFalse = []string{"false"}
	headerZero  = []string{"0"}
)

func (s *Server) lastContactMS() int64 {
	if s.raft.State() == raft.Leader {
		return 0
	}
	last := s.raft.LastContact()
	if last.IsZero() {
		return 0
	}
	return time.Since(last).Milliseconds()
}

// kvKey returns the KV key of a /v1/kv/ request. The handler wrapper has
// already refused bad keys with checkKey.
func kvKey(r *http.Request) string { return strings.TrimPrefix(r.URL.Path, "/v1/kv/") }

// checkKey refuses keys Consul 1.22 refuses: a ".." segment, or leading or
// trailing spaces.
func checkKey(key string) error {
	if key != strings.TrimSpace(key) {
		return badRequest("Invalid key name: leading or trailing spaces")
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == ".." {
			return badRequest(`Invalid key name: ".." segment`)
		}
	}
	return nil
}
