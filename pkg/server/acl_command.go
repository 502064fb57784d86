package server

import (
	"github.com/kvxproject/kvx/pkg/server/state"
)

// ACL commands carry their request as JSON after the type byte, as the
// catalog's. The leader validates them and resolves names to IDs before
// they are logged; the FSM refuses only what depends on the state (a
// second bootstrap, a duplicate name or secret).

const (
	aclTokenSet     = "token-set"
	aclTokenDelete  = "token-delete"
	aclPolicySet    = "policy-set"
	aclPolicyDelete = "policy-delete"
	aclBootstrap    = "bootstrap"
)

type aclCommand struct {
	Op         string
	Token      *state.ACLToken  `json:",omitempty"`
	Policy     *state.ACLPolicy `json:",omitempty"`
	ID         string           `json:",omitempty"`
	ResetIndex uint64           `json:",omitempty"`
}

func encodeACL(c *aclCommand) ([]byte, error) { return encodeCatalog(cmdACL, c) }

// applyACL applies an ACL command in a transaction of its own; it returns
// the refusal, or nil.
func (f *fsm) applyACL(c *aclCommand, index uint64) any {
	w := f.store.Write()
	w.At(index)
	var err error
	switch {
	case c.Op == aclTokenSet && c.Token != nil:
		err = w.ACLTokenSet(c.Token)
	case c.Op == aclTokenDelete:
		w.ACLTokenDelete(c.ID)
	case c.Op == aclPolicySet && c.Policy != nil:
		err = w.ACLPolicySet(c.Policy)
	case c.Op == aclPolicyDelete:
		w.ACLPolicyDelete(c.ID)
	case c.Op == aclBootstrap && c.Token != nil && c.Policy != nil:
		err = w.ACLBootstrap(c.ResetIndex, c.Token, c.Policy)
	default:
		err = errBadCommand
	}
	if err != nil {
		w.Abort()
		return err
	}
	w.Commit()
	return nil
}
