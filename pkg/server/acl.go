package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvxproject/kvx/pkg/acl"
	"github.com/kvxproject/kvx/pkg/server/state"
)

// ACLOptions turn on access control. The zero value leaves it off.
type ACLOptions struct {
	Enabled bool
	// DefaultPolicy applies where no rule of a token matches: "allow" or
	// "deny" ("" is deny).
	DefaultPolicy string
	// KeepSecrets stores SecretIDs in the state, so that they can be read
	// back (Consul's behaviour, -acl-hash-secrets=false). By default only
	// their SHA-256 is stored and a SecretID is shown once, at creation.
	KeepSecrets bool
	// AgentToken is the token this server's own agent work uses; it is not
	// needed by a server (whose writes do not go through HTTP) but resolves
	// DNS answers when set (AuthorizerFor).
	AgentToken string
}

// The builtin IDs, as Consul's.
const (
	anonymousAccessor   = "00000000-0000-0000-0000-000000000002"
	anonymousSecret     = "anonymous"
	managementPolicyID  = "00000000-0000-0000-0000-000000000001"
	managementPolicy    = "global-management"
	aclBootstrapResetFn = "acl-bootstrap-reset"
)

var (
	errPermissionDenied = &httpError{code: http.StatusForbidden, msg: "Permission denied"}
	errACLNotFound      = &httpError{code: http.StatusForbidden, msg: "ACL not found"}
	errACLDisabled      = &httpError{code: http.StatusUnauthorized, msg: "ACL support disabled"}
	allowAll            = acl.AllowAll()
)

// hashSecret is what the state keeps of a SecretID.
func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// requestToken returns the token of a request: ?token=, X-Consul-Token or
// Authorization: Bearer, in Consul's order; "" for none.
func requestToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// aclRequest holds the resolved token of one request; blockingQuery
// replaces it each time the query wakes.
type aclRequest struct {
	mu    sync.Mutex
	authz *acl.Authorizer
	token *state.ACLToken
}

type aclCtxKey struct{}

// withACL gives a request the holder of its resolved token.
func (s *Server) withACL(r *http.Request) *http.Request {
	if !s.opts.ACL.Enabled {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), aclCtxKey{}, &aclRequest{}))
}

// authz returns the Authorizer of the request's token, resolved on first
// use from this node's state (so after a forward decision, on the node that
// answers). Without ACLs everything is allowed.
func (s *Server) authz(r *http.Request) (*acl.Authorizer, error) {
	if !s.opts.ACL.Enabled {
		return allowAll, nil
	}
	ar, _ := r.Context().Value(aclCtxKey{}).(*aclRequest)
	if ar != nil {
		ar.mu.Lock()
		defer ar.mu.Unlock()
		if ar.authz != nil {
			return ar.authz, nil
		}
	}
	a, tok, err := s.resolveToken(s.store.Read(), requestToken(r))
	if err != nil {
		return nil, err
	}
	if ar != nil {
		ar.authz, ar.token = a, tok
	}
	return a, nil
}

// reauthorize resolves the request's token again from rt, for a blocking
// query that woke: a token deleted, expired or changed meanwhile takes
// effect before anything more is answered.
func (s *Server) reauthorize(r *http.Request, rt *state.ReadTxn) error {
	if !s.opts.ACL.Enabled {
		return nil
	}
	ar, _ := r.Context().Value(aclCtxKey{}).(*aclRequest)
	if ar == nil {
		return nil
	}
	a, tok, err := s.resolveToken(rt, requestToken(r))
	if err != nil {
		return err
	}
	ar.mu.Lock()
	ar.authz, ar.token = a, tok
	ar.mu.Unlock()
	return nil
}

// requestACLToken returns the resolved token of a request (nil before
// authz or without ACLs).
func requestACLToken(r *http.Request) *state.ACLToken {
	ar, _ := r.Context().Value(aclCtxKey{}).(*aclRequest)
	if ar == nil {
		return nil
	}
	ar.mu.Lock()
	defer ar.mu.Unlock()
	return ar.token
}

// anonymousToken returns the anonymous token as stored, or as it is before
// anyone gave it policies.
func anonymousToken(rt *state.ReadTxn) *state.ACLToken {
	if t := rt.ACLToken(anonymousAccessor); t != nil {
		return t
	}
	return &state.ACLToken{AccessorID: anonymousAccessor, SecretHash: hashSecret(anonymousSecret),
		Description: "Anonymous Token"}
}

// resolveToken finds the token with this secret and builds its Authorizer.
// The token is found by the SHA-256 of the secret, so the lookup's timing
// tells nothing about any stored secret; the final comparison of the hashes
// is constant-time. An unknown or expired token is "ACL not found".
func (s *Server) resolveToken(rt *state.ReadTxn, secret string) (*acl.Authorizer, *state.ACLToken, error) {
	var tok *state.ACLToken
	if secret == "" || secret == anonymousSecret {
		tok = anonymousToken(rt)
	} else {
		h := hashSecret(secret)
		tok = rt.ACLTokenBySecretHash(h)
		if tok == nil || subtle.ConstantTimeCompare([]byte(h), []byte(tok.SecretHash)) != 1 || tok.Expired(time.Now()) {
			return nil, nil, errACLNotFound
		}
	}
	return s.authorizerOf(rt, tok), tok, nil
}

type cachedAuthorizer struct {
	aclIndex uint64
	authz    *acl.Authorizer
}

// authorizerOf returns the Authorizer of a token's policies, built once per
// token and state of the ACL tables: any change to a token or policy
// rebuilds them.
func (s *Server) authorizerOf(rt *state.ReadTxn, tok *state.ACLToken) *acl.Authorizer {
	idx := rt.ACLIndex(nil)
	if v, ok := s.aclAuthorizers.Load(tok.AccessorID); ok && v.(cachedAuthorizer).aclIndex == idx && idx != 0 {
		return v.(cachedAuthorizer).authz
	}
	a := s.buildAuthorizer(rt, tok)
	s.aclAuthorizers.Store(tok.AccessorID, cachedAuthorizer{aclIndex: idx, authz: a})
	return a
}

// buildAuthorizer builds the Authorizer of a token's policies.
func (s *Server) buildAuthorizer(rt *state.ReadTxn, tok *state.ACLToken) *acl.Authorizer {
	var policies []*acl.Policy
	for _, l := range tok.Policies {
		p := rt.ACLPolicy(l.ID)
		if p == nil {
			continue // a deleted policy grants nothing
		}
		if len(p.Datacenters) > 0 && !slices.Contains(p.Datacenters, s.opts.Datacenter) {
			continue // a policy for other datacenters, as Consul
		}
		if p.ID == managementPolicyID {
			return acl.Manage()
		}
		if parsed := s.parsedPolicy(p); parsed != nil {
			policies = append(policies, parsed)
		}
	}
	return acl.New(s.opts.ACL.DefaultPolicy == "allow", policies...)
}

type parsedPolicy struct {
	modify uint64
	policy *acl.Policy
}

// parsedPolicy parses a policy's rules once per version of it.
func (s *Server) parsedPolicy(p *state.ACLPolicy) *acl.Policy {
	if v, ok := s.aclPolicies.Load(p.ID); ok && v.(parsedPolicy).modify == p.ModifyIndex {
		return v.(parsedPolicy).policy
	}
	parsed, err := acl.Parse(p.Rules)
	if err != nil { // validated when written: only a hand-edited snapshot gets here
		s.logger.Error("acl policy does not parse: it grants nothing", "policy", p.Name, "err", err)
		return nil
	}
	s.aclPolicies.Store(p.ID, parsedPolicy{modify: p.ModifyIndex, policy: parsed})
	return parsed
}

// AuthorizerFor returns the Authorizer of a token secret ("" for the
// agent token, or the anonymous one without it) against this server's
// state, for callers outside HTTP such as a DNS server: answers filtered
// with its ServiceRead and NodeRead. Without ACLs everything is allowed.
func (s *Server) AuthorizerFor(secret string) (*acl.Authorizer, error) {
	if !s.opts.ACL.Enabled {
		return allowAll, nil
	}
	if secret == "" {
		secret = s.opts.ACL.AgentToken
	}
	a, _, err := s.resolveToken(s.store.Read(), secret)
	return a, err
}

// setFiltered marks an answer some entries of which the token could not
// read, as Consul does.
func setFiltered(w http.ResponseWriter) {
	w.Header()["X-Consul-Results-Filtered-By-Acls"] = []string{"true"}
}

// BlockingQueries is how many blocking queries are waiting now (for tests
// that must act while one waits).
func (s *Server) BlockingQueries() int64 { return s.blocking.Load() }

// need refuses the request with 403 unless its token passes check.
func (s *Server) need(r *http.Request, check func(*acl.Authorizer) bool) error {
	a, err := s.authz(r)
	if err != nil {
		return err
	}
	if !check(a) {
		return errPermissionDenied
	}
	return nil
}

// HTTPStatus gives package agent/local the status of a server error.
func (e *httpError) HTTPStatus() int { return e.code }
