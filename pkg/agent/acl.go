package agent

import (
	"context"
	"errors"
	"net/http"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/acl"
	"github.com/kvxproject/kvx/pkg/agent/local"
)

// authorizerAnswer is the servers' /v1/kvx/acl/authorizer answer.
type authorizerAnswer struct {
	Enabled      bool
	DefaultAllow bool
	Management   bool
	Rules        []string
}

// statusError carries a server's refusal of a token to the client.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string   { return e.msg }
func (e *statusError) HTTPStatus() int { return e.code }

// authorize resolves the token of a request to the agent's own endpoints
// (/v1/agent/services, service/register, ...): the servers hold the ACLs,
// and give the token's own rules, from which the agent decides as a server
// would. With ACLs off on the servers, everything is allowed. The agent
// asks only when it has an -acl-agent-token: in a cluster with ACLs it
// cannot sync without one, and without ACLs its endpoints keep answering
// when no server does.
func (a *Agent) authorize(r *http.Request) (local.Authz, error) {
	token := requestToken(r)
	var out authorizerAnswer
	err := a.srv.do(r.Context(), func(c *consulapi.Client) error {
		q := (&consulapi.QueryOptions{Token: token}).WithContext(r.Context())
		if token == "" {
			q.Token = "anonymous" // not the agent's own token: the request's, which is none
		}
		_, err := c.Raw().Query("/v1/kvx/acl/authorizer", &out, q)
		return err
	})
	if err != nil {
		var se consulapi.StatusError
		if errors.As(err, &se) {
			return nil, &statusError{code: se.Code, msg: se.Body}
		}
		if r.Context().Err() != nil {
			return nil, context.Cause(r.Context())
		}
		return nil, &statusError{code: http.StatusInternalServerError, msg: "kvx agent: resolve token: " + err.Error()}
	}
	if !out.Enabled {
		return acl.AllowAll(), nil
	}
	if out.Management {
		return acl.Manage(), nil
	}
	var policies []*acl.Policy
	for _, rules := range out.Rules {
		p, err := acl.Parse(rules)
		if err != nil {
			continue // the server validated it; a newer syntax grants nothing here
		}
		policies = append(policies, p)
	}
	return acl.New(out.DefaultAllow, policies...), nil
}

// requestToken is the request's token, as the servers read it.
func requestToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && (h[:7] == "Bearer " || h[:7] == "bearer ") {
		return h[7:]
	}
	return ""
}
