package local

import (
	"context"
	"net/http"
)

// Authz is what the agent endpoints ask of a request's token (package
// acl's Authorizer has these methods; this package may not import it).
type Authz interface {
	ServiceRead(name string) bool
	ServiceWrite(name string) bool
	NodeRead(name string) bool
	NodeWrite(name string) bool
}

// StatusError is an error that carries its HTTP status, such as a
// server's 403 "Permission denied".
type StatusError interface {
	error
	HTTPStatus() int
}

type allowAll struct{}

func (allowAll) ServiceRead(string) bool  { return true }
func (allowAll) ServiceWrite(string) bool { return true }
func (allowAll) NodeRead(string) bool     { return true }
func (allowAll) NodeWrite(string) bool    { return true }

type authzKey struct{}

var errPermissionDenied = &httpError{code: http.StatusForbidden, msg: "Permission denied"}

// withAuthz resolves the request's token with Options.Authorize.
func (s *State) withAuthz(r *http.Request) (*http.Request, error) {
	if s.opts.Authorize == nil {
		return r, nil
	}
	az, err := s.opts.Authorize(r)
	if err != nil {
		return nil, err
	}
	return r.WithContext(context.WithValue(r.Context(), authzKey{}, az)), nil
}

func authzOf(r *http.Request) Authz {
	if az, ok := r.Context().Value(authzKey{}).(Authz); ok {
		return az
	}
	return allowAll{}
}

// need refuses the request unless ok.
func need(ok bool) error {
	if !ok {
		return errPermissionDenied
	}
	return nil
}

// serviceWrite checks write on the service with this ID (node write when
// there is none, which the operation then refuses as unknown).
func (s *State) serviceWrite(r *http.Request, id string) error {
	if sv, ok := s.Service(id); ok {
		return need(authzOf(r).ServiceWrite(sv.Service))
	}
	return need(authzOf(r).NodeWrite(s.opts.Node.Node))
}

// checkWrite checks write on a check: its service's, or the node's.
func (s *State) checkWrite(r *http.Request, serviceID string) error {
	if serviceID == "" {
		return need(authzOf(r).NodeWrite(s.opts.Node.Node))
	}
	return s.serviceWrite(r, serviceID)
}

// checkWriteByID checks write on the check with this ID.
func (s *State) checkWriteByID(r *http.Request, id string) error {
	for _, c := range s.Checks() {
		if c.CheckID == id {
			return s.checkWrite(r, c.ServiceID)
		}
	}
	return s.checkWrite(r, "")
}
