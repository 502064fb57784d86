package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvxproject/kvx/pkg/acl"
	"github.com/kvxproject/kvx/pkg/server/state"
)

// The /v1/acl/ endpoints, in Consul's wire format: bootstrap, tokens and
// policies. Writes go through Raft on the leader.

// tokenJSON is a token as Consul answers it.
type tokenJSON struct {
	AccessorID     string
	SecretID       string
	Description    string
	Policies       []state.ACLLink `json:",omitempty"`
	Local          bool
	ExpirationTime *time.Time    `json:",omitempty"`
	ExpirationTTL  time.Duration `json:",omitempty"`
	CreateTime     time.Time
	CreateIndex    uint64
	ModifyIndex    uint64
}

// tokenBody is a token create or update body.
type tokenBody struct {
	AccessorID     string
	SecretID       string
	Description    string
	Policies       []state.ACLLink
	Local          bool
	ExpirationTime *time.Time
	ExpirationTTL  json.RawMessage
}

type policyJSON struct {
	ID          string
	Name        string
	Description string
	Rules       string `json:",omitempty"`
	Datacenters []string
	CreateIndex uint64
	ModifyIndex uint64
}

var policyNameRE = regexp.MustCompile(`^[A-Za-z0-9\-_]{1,128}$`)

func (s *Server) handleACL(w http.ResponseWriter, r *http.Request) error {
	if !s.opts.ACL.Enabled {
		return errACLDisabled
	}
	if err := s.checkScope(r.URL.Query()); err != nil {
		return err
	}
	if !s.IsLeader() && !(r.Method == http.MethodGet && has(r.URL.Query(), "stale")) {
		s.forward(w, r)
		return nil
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/acl/")
	switch {
	case path == "bootstrap":
		if r.Method != http.MethodPut {
			return methodNotAllowed(r, "PUT")
		}
		return s.aclBootstrap(w)
	case path == "token/self":
		if err := onlyGET(r); err != nil {
			return err
		}
		return s.aclTokenSelf(w, r)
	case path == "token" || strings.HasPrefix(path, "token/"):
		return s.aclToken(w, r, strings.TrimPrefix(strings.TrimPrefix(path, "token"), "/"))
	case path == "tokens":
		if err := onlyGET(r); err != nil {
			return err
		}
		return s.aclTokenList(w, r)
	case strings.HasPrefix(path, "policy/name/"):
		if err := onlyGET(r); err != nil {
			return err
		}
		if err := s.needACL(r, false); err != nil {
			return err
		}
		p := s.store.Read().ACLPolicyByName(strings.TrimPrefix(path, "policy/name/"))
		return s.writePolicy(w, p)
	case path == "policy" || strings.HasPrefix(path, "policy/"):
		return s.aclPolicy(w, r, strings.TrimPrefix(strings.TrimPrefix(path, "policy"), "/"))
	case path == "policies":
		if err := onlyGET(r); err != nil {
			return err
		}
		return s.aclPolicyList(w, r)
	}
	return &httpError{code: http.StatusNotFound, msg: "Not found"}
}

// needACL checks the request's token for acl read (or write).
func (s *Server) needACL(r *http.Request, write bool) error {
	a, err := s.authz(r)
	if err != nil {
		return err
	}
	if (write && !a.ACLWrite()) || (!write && !a.ACLRead()) {
		return errPermissionDenied
	}
	return nil
}

func (s *Server) applyACL(c *aclCommand) error {
	cmd, err := encodeACL(c)
	if err != nil {
		return err
	}
	if _, err := s.apply(cmd); err != nil {
		var done *state.ErrBootstrapped
		switch {
		case errors.As(err, &done):
			return &httpError{code: http.StatusForbidden, msg: "Permission denied: " + err.Error()}
		case errors.Is(err, state.ErrACL):
			return badRequest(strings.TrimPrefix(err.Error(), state.ErrACL.Error()+": "))
		}
		return err
	}
	return nil
}

func (s *Server) aclBootstrap(w http.ResponseWriter) error {
	var reset uint64
	resetFile := ""
	if !s.opts.Dev {
		resetFile = filepath.Join(s.opts.DataDir, aclBootstrapResetFn)
		if b, err := os.ReadFile(resetFile); err == nil {
			v, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			if perr != nil {
				return badRequest(fmt.Sprintf("%s: want the reset index, a number: %v", resetFile, perr))
			}
			reset = v
		}
	}
	accessor, err := newUUID()
	if err != nil {
		return err
	}
	secret, err := newUUID()
	if err != nil {
		return err
	}
	tok := &state.ACLToken{AccessorID: accessor, SecretHash: hashSecret(secret),
		Description: "Bootstrap Token (Global Management)", Policies: []state.ACLLink{{ID: managementPolicyID}},
		CreateTime: time.Now().UTC()}
	if s.opts.ACL.KeepSecrets {
		tok.SecretID = secret
	}
	pol := &state.ACLPolicy{ID: managementPolicyID, Name: managementPolicy,
		Description: "Builtin Policy that grants unlimited access", Rules: acl.ManagementRules}
	if err := s.applyACL(&aclCommand{Op: aclBootstrap, Token: tok, Policy: pol, ResetIndex: reset}); err != nil {
		return err
	}
	if resetFile != "" && reset != 0 {
		if err := os.Remove(resetFile); err != nil && !os.IsNotExist(err) {
			s.logger.Warn("acl bootstrap: could not remove the reset file", "file", resetFile, "err", err)
		}
	}
	rt := s.store.Read()
	out := s.tokenOut(rt, rt.ACLToken(accessor))
	out.SecretID = secret
	writeJSON(w, http.StatusOK, out)
	return nil
}

// tokenOut is a token's answer. Its SecretID is there only when secrets
// are kept; the caller adds it where the requester has just given or got it.
func (s *Server) tokenOut(rt *state.ReadTxn, t *state.ACLToken) *tokenJSON {
	out := &tokenJSON{AccessorID: t.AccessorID, SecretID: t.SecretID, Description: t.Description, Local: t.Local,
		ExpirationTime: t.ExpirationTime, ExpirationTTL: t.ExpirationTTL, CreateTime: t.CreateTime,
		CreateIndex: t.CreateIndex, ModifyIndex: t.ModifyIndex}
	if t.AccessorID == anonymousAccessor {
		out.SecretID = anonymousSecret
	}
	for _, l := range t.Policies {
		if p := rt.ACLPolicy(l.ID); p != nil {
			out.Policies = append(out.Policies, state.ACLLink{ID: p.ID, Name: p.Name})
		}
	}
	return out
}

// hideSecret hides a kept SecretID from a reader without acl write, as
// Consul does.
func hideSecret(t *tokenJSON, hide bool) *tokenJSON {
	if hide && t.SecretID != "" && t.AccessorID != anonymousAccessor {
		t.SecretID = "<hidden>"
	}
	return t
}

func (s *Server) aclTokenSelf(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authz(r); err != nil {
		return err
	}
	tok := requestACLToken(r)
	rt := s.store.Read()
	out := s.tokenOut(rt, tok)
	if secret := requestToken(r); secret != "" {
		out.SecretID = secret // the requester has it: nothing is disclosed
	}
	s.setMeta(w, rt.ACLIndex(nil), true)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) aclTokenList(w http.ResponseWriter, r *http.Request) error {
	if err := s.needACL(r, false); err != nil {
		return err
	}
	rt := s.store.Read()
	toks := rt.ACLTokens()
	if !slices.ContainsFunc(toks, func(t *state.ACLToken) bool { return t.AccessorID == anonymousAccessor }) {
		toks = append(toks, anonymousToken(rt))
	}
	hide := s.need(r, (*acl.Authorizer).ACLWrite) != nil
	out := make([]*tokenJSON, 0, len(toks))
	for _, t := range toks {
		out = append(out, hideSecret(s.tokenOut(rt, t), hide))
	}
	s.setMeta(w, rt.ACLIndex(nil), true)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) aclToken(w http.ResponseWriter, r *http.Request, accessor string) error {
	switch {
	case r.Method == http.MethodPut:
		if err := s.needACL(r, true); err != nil {
			return err
		}
		return s.aclTokenSet(w, r, accessor)
	case accessor == "":
		return methodNotAllowed(r, "PUT")
	case r.Method == http.MethodGet:
		if err := s.needACL(r, false); err != nil {
			return err
		}
		rt := s.store.Read()
		t := rt.ACLToken(accessor)
		if t == nil && accessor == anonymousAccessor {
			t = anonymousToken(rt)
		}
		if t == nil {
			return &httpError{code: http.StatusNotFound, msg: "ACL not found"}
		}
		s.setMeta(w, rt.ACLIndex(nil), true)
		hide := s.need(r, (*acl.Authorizer).ACLWrite) != nil
		writeJSON(w, http.StatusOK, hideSecret(s.tokenOut(rt, t), hide))
		return nil
	case r.Method == http.MethodDelete:
		if err := s.needACL(r, true); err != nil {
			return err
		}
		if accessor == anonymousAccessor {
			return badRequest("Delete operation not permitted on the anonymous token")
		}
		if self := requestACLToken(r); self != nil && self.AccessorID == accessor {
			return badRequest("Deletion of the request's authorization token is not permitted")
		}
		if err := s.applyACL(&aclCommand{Op: aclTokenDelete, ID: accessor}); err != nil {
			return err
		}
		writeRawJSON(w, http.StatusOK, []byte("true"))
		return nil
	}
	return methodNotAllowed(r, "GET, PUT, DELETE")
}

// aclTokenSet creates (accessor "") or updates a token.
func (s *Server) aclTokenSet(w http.ResponseWriter, r *http.Request, accessor string) error {
	var body tokenBody
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	rt := s.store.Read()
	var tok *state.ACLToken
	secret := ""
	if accessor != "" { // update: the secret cannot change
		if body.AccessorID != "" && body.AccessorID != accessor {
			return badRequest("Token Accessor ID in URL and payload do not match")
		}
		old := rt.ACLToken(accessor)
		if old == nil && accessor == anonymousAccessor {
			old = anonymousToken(rt)
		}
		if old == nil {
			return badRequest("Cannot find token to update")
		}
		if body.SecretID != "" && hashSecret(body.SecretID) != old.SecretHash {
			return badRequest("Changing a token's SecretID is not permitted")
		}
		c := *old
		tok = &c
		if body.ExpirationTime != nil || len(body.ExpirationTTL) > 0 {
			return badRequest("Cannot change expiration time")
		}
	} else {
		tok = &state.ACLToken{AccessorID: body.AccessorID, CreateTime: time.Now().UTC(), Local: body.Local}
		if tok.AccessorID == "" {
			id, err := newUUID()
			if err != nil {
				return err
			}
			tok.AccessorID = id
		} else if !uuidRE.MatchString(tok.AccessorID) {
			return badRequest("Invalid Token: AccessorID is not a valid UUID")
		} else if rt.ACLToken(tok.AccessorID) != nil || tok.AccessorID == anonymousAccessor {
			return badRequest("Invalid Token: AccessorID is already in use")
		}
		secret = body.SecretID
		if secret == "" {
			id, err := newUUID()
			if err != nil {
				return err
			}
			secret = id
		} else if !uuidRE.MatchString(secret) {
			return badRequest("Invalid Token: SecretID is not a valid UUID")
		}
		tok.SecretHash = hashSecret(secret)
		if s.opts.ACL.KeepSecrets {
			tok.SecretID = secret
		}
		ttl, err := parseTTL(body.ExpirationTTL)
		if err != nil {
			return err
		}
		switch {
		case ttl != 0 && body.ExpirationTime != nil:
			return badRequest("Token Expiration TTL and Expiration Time cannot both be set")
		case ttl < 0:
			return badRequest("Token Expiration TTL must be positive")
		case ttl != 0:
			t := tok.CreateTime.Add(ttl)
			tok.ExpirationTime, tok.ExpirationTTL = &t, ttl
		case body.ExpirationTime != nil:
			if !body.ExpirationTime.After(time.Now()) {
				return badRequest("ExpirationTime cannot be in the past")
			}
			t := body.ExpirationTime.UTC()
			tok.ExpirationTime = &t
		}
	}
	tok.Description = body.Description
	links, err := resolveLinks(rt, body.Policies)
	if err != nil {
		return err
	}
	tok.Policies = links
	if err := s.applyACL(&aclCommand{Op: aclTokenSet, Token: tok}); err != nil {
		return err
	}
	rt = s.store.Read()
	out := s.tokenOut(rt, rt.ACLToken(tok.AccessorID))
	if secret != "" {
		out.SecretID = secret // shown once, at creation
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// resolveLinks turns a token's policy links (by ID or by name) into IDs.
func resolveLinks(rt *state.ReadTxn, links []state.ACLLink) ([]state.ACLLink, error) {
	var out []state.ACLLink
	for _, l := range links {
		var p *state.ACLPolicy
		switch {
		case l.ID != "":
			p = rt.ACLPolicy(l.ID)
		case l.Name != "":
			p = rt.ACLPolicyByName(l.Name)
		default:
			return nil, badRequest("Invalid Policy: a policy link needs an ID or a Name")
		}
		if p == nil {
			return nil, badRequest(fmt.Sprintf("ACL not found: no such policy %q", l.ID+l.Name))
		}
		if !slices.ContainsFunc(out, func(x state.ACLLink) bool { return x.ID == p.ID }) {
			out = append(out, state.ACLLink{ID: p.ID})
		}
	}
	return out, nil
}

// parseTTL reads an ExpirationTTL: Consul takes a duration string or
// nanoseconds.
func parseTTL(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, badRequest("Invalid ExpirationTTL: " + err.Error())
		}
		return d, nil
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, badRequest("Invalid ExpirationTTL: want a duration")
	}
	return time.Duration(n), nil
}

func (s *Server) writePolicy(w http.ResponseWriter, p *state.ACLPolicy) error {
	if p == nil {
		return &httpError{code: http.StatusNotFound, msg: "ACL not found"}
	}
	writeJSON(w, http.StatusOK, policyOut(p, true))
	return nil
}

func policyOut(p *state.ACLPolicy, rules bool) *policyJSON {
	out := &policyJSON{ID: p.ID, Name: p.Name, Description: p.Description, Datacenters: p.Datacenters,
		CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex}
	if rules {
		out.Rules = p.Rules
	}
	return out
}

func (s *Server) aclPolicyList(w http.ResponseWriter, r *http.Request) error {
	if err := s.needACL(r, false); err != nil {
		return err
	}
	rt := s.store.Read()
	out := []*policyJSON{}
	for _, p := range rt.ACLPolicies() {
		out = append(out, policyOut(p, false))
	}
	s.setMeta(w, rt.ACLIndex(nil), true)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) aclPolicy(w http.ResponseWriter, r *http.Request, id string) error {
	switch {
	case r.Method == http.MethodPut:
		if err := s.needACL(r, true); err != nil {
			return err
		}
		return s.aclPolicySet(w, r, id)
	case id == "":
		return methodNotAllowed(r, "PUT")
	case r.Method == http.MethodGet:
		if err := s.needACL(r, false); err != nil {
			return err
		}
		return s.writePolicy(w, s.store.Read().ACLPolicy(id))
	case r.Method == http.MethodDelete:
		if err := s.needACL(r, true); err != nil {
			return err
		}
		if id == managementPolicyID {
			return badRequest("Delete operation not permitted on the builtin global-management policy")
		}
		if err := s.applyACL(&aclCommand{Op: aclPolicyDelete, ID: id}); err != nil {
			return err
		}
		writeRawJSON(w, http.StatusOK, []byte("true"))
		return nil
	}
	return methodNotAllowed(r, "GET, PUT, DELETE")
}

func (s *Server) aclPolicySet(w http.ResponseWriter, r *http.Request, id string) error {
	var body policyJSON
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	rt := s.store.Read()
	if id != "" {
		if body.ID != "" && body.ID != id {
			return badRequest("Policy ID in URL and payload do not match")
		}
		if rt.ACLPolicy(id) == nil {
			return badRequest("Cannot find policy " + id)
		}
		if id == managementPolicyID {
			return badRequest("Changing the builtin global-management policy is not permitted")
		}
	} else {
		if body.ID != "" {
			return badRequest("Cannot specify a policy ID when creating one")
		}
		nid, err := newUUID()
		if err != nil {
			return err
		}
		id = nid
	}
	if !policyNameRE.MatchString(body.Name) {
		return badRequest(fmt.Sprintf("Invalid Policy: invalid Name %q: letters, digits, - and _, 1 to 128 of them", body.Name))
	}
	if _, err := acl.Parse(body.Rules); err != nil {
		return badRequest("Invalid Policy: " + err.Error())
	}
	p := &state.ACLPolicy{ID: id, Name: body.Name, Description: body.Description, Rules: body.Rules, Datacenters: body.Datacenters}
	if err := s.applyACL(&aclCommand{Op: aclPolicySet, Policy: p}); err != nil {
		return err
	}
	return s.writePolicy(w, s.store.Read().ACLPolicy(id))
}

// authorizerJSON is what /v1/kvx/acl/authorizer answers: the request's own
// token's rules and the default policy, from which a kvx agent builds the
// same Authorizer for its /v1/agent/ endpoints. A token may read its own
// rules (Consul's token/self shows its policies too).
type authorizerJSON struct {
	Enabled      bool
	DefaultAllow bool
	Management   bool
	Rules        []string
}

func (s *Server) handleKvxAuthorizer(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	if !s.opts.ACL.Enabled {
		writeJSON(w, http.StatusOK, authorizerJSON{})
		return nil
	}
	if !s.IsLeader() && !has(r.URL.Query(), "stale") {
		s.forward(w, r)
		return nil
	}
	if _, err := s.authz(r); err != nil {
		return err
	}
	tok := requestACLToken(r)
	rt := s.store.Read()
	out := authorizerJSON{Enabled: true, DefaultAllow: s.opts.ACL.DefaultPolicy == "allow", Rules: []string{}}
	for _, l := range tok.Policies {
		if p := rt.ACLPolicy(l.ID); p != nil {
			out.Management = out.Management || p.ID == managementPolicyID
			out.Rules = append(out.Rules, p.Rules)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
