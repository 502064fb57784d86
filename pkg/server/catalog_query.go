package server

import (
	"compress/gzip"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	bexpr "github.com/hashicorp/go-bexpr"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/kvxproject/kvx/pkg/acl"
	"github.com/kvxproject/kvx/pkg/server/state"
)

// catalogQuery is what the catalog and health reads take besides the
// common query options: the filters, applied to the answer after the
// blocking query returns (blocking is on the index, as in Consul).
type catalogQuery struct {
	queryOpts
	tags     []string          // ?tag, repeatable: every one must match
	nodeMeta map[string]string // ?node-meta=key:value, repeatable
	passing  bool              // ?passing
	filter   *bexpr.Evaluator  // ?filter
	// shared: the answer may come from s.answers (a query on one service).
	// Only blocking queries share: they are the ones that come in crowds.
	shared bool
	// az is the request's token's Authorizer once the query has run; the
	// answers leave out what it cannot read and set filtered.
	az       *acl.Authorizer
	filtered bool
}

// readable reports whether the token may see a node, and a service on it
// (svc "" for none), noting when it may not.
func (c *catalogQuery) readable(node, svc string) bool {
	if c.az.NodeRead(node) && (svc == "" || c.az.ServiceRead(svc)) {
		return true
	}
	c.filtered = true
	return false
}

func (s *Server) parseCatalogQuery(q url.Values) (catalogQuery, error) {
	o, err := s.parseQuery(q)
	c := catalogQuery{queryOpts: o}
	if err != nil {
		return c, err
	}
	c.tags = q["tag"]
	for _, m := range q["node-meta"] {
		k, v, _ := strings.Cut(m, ":")
		if c.nodeMeta == nil {
			c.nodeMeta = map[string]string{}
		}
		c.nodeMeta[k] = v
	}
	if has(q, "passing") {
		c.passing = true
		if v := q.Get("passing"); v != "" {
			if c.passing, err = strconv.ParseBool(v); err != nil {
				return c, badRequest("Invalid value for ?passing")
			}
		}
	}
	if f := q.Get("filter"); f != "" {
		if c.filter, err = bexpr.CreateEvaluator(f); err != nil {
			return c, badRequest("Failed to create boolean expression evaluator: " + err.Error())
		}
	}
	return c, nil
}

// metaOK reports whether a node's meta satisfies ?node-meta.
func (c *catalogQuery) metaOK(n *state.Node) bool {
	for k, v := range c.nodeMeta {
		if have, ok := n.Meta[k]; !ok || have != v {
			return false
		}
	}
	return true
}

// tagsOK reports whether a service has every ?tag, case-insensitively.
func (c *catalogQuery) tagsOK(sv *state.Service) bool {
	for _, want := range c.tags {
		found := false
		for _, t := range sv.Tags {
			if strings.EqualFold(t, want) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// match evaluates ?filter on one element of the answer.
func (c *catalogQuery) match(v any) (bool, error) {
	if c.filter == nil {
		return true, nil
	}
	ok, err := c.filter.Evaluate(v)
	if err != nil {
		return false, badRequest(err.Error())
	}
	return ok, nil
}

// filterSlice keeps the elements that ?filter matches.
func filterSlice[T any](c *catalogQuery, in []T) ([]T, error) {
	if c.filter == nil {
		return in, nil
	}
	out := in[:0]
	for _, v := range in {
		ok, err := c.match(v)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, v)
		}
	}
	return out, nil
}

// catalogRead answers a catalog or health read: GET only, forwarded to the
// leader unless ?stale, blocking on ?index. query reads the state and
// returns the index; answer builds the body from what it read.
func (s *Server) catalogRead(w http.ResponseWriter, r *http.Request, c *catalogQuery,
	query func(rt *state.ReadTxn, ws memdb.WatchSet) uint64, answer func() (any, error)) error {
	if s.mustForward(c.queryOpts) {
		s.forward(w, r)
		return nil
	}
	idx, err := s.blockingQuery(r, c.queryOpts, func(ws memdb.WatchSet, rt *state.ReadTxn) uint64 { return query(rt, ws) })
	if err != nil {
		return err
	}
	if c.az, err = s.authz(r); err != nil {
		return err
	}
	var body *encoded
	level := gzip.BestSpeed // compressed for one request
	// The shared answers are the unfiltered ones: with ACLs, only a
	// management token's answer may be shared.
	if c.shared && c.minIndex > 0 && (!s.opts.ACL.Enabled || c.az.IsManagement()) {
		body, err = s.answers.body(answerKey(r), idx, 0, encodeJSON(answer))
		level = gzip.DefaultCompression // compressed once for all
	} else {
		var b []byte
		b, err = encodeJSON(answer)()
		body = &encoded{body: b}
	}
	if err != nil {
		return err
	}
	s.setMeta(w, idx, true)
	if c.filtered {
		setFiltered(w)
	}
	consistency := "leader"
	switch {
	case c.stale:
		consistency = "stale"
	case c.consistent:
		consistency = "consistent"
	}
	w.Header()["X-Consul-Effective-Consistency"] = []string{consistency}
	w.Header()["Content-Type"] = []string{"application/json"}
	writeEncoded(w, http.StatusOK, body, level)
	return nil
}
