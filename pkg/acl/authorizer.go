package acl

import (
	iradix "github.com/hashicorp/go-immutable-radix"
)

// Authorizer answers what one token may do: the merged rules of its
// policies over a default.
type Authorizer struct {
	defaultAllow bool
	manage       bool
	trees        map[Resource]*iradix.Tree // name -> *node
	operator     Access
	acl          Access
}

// node holds the merged exact and prefix rules on one name.
type node struct {
	exact, prefix Access
}

// Level is how a decision came to be: a rule or the default.
type decision uint8

const (
	dDefault decision = iota
	dAllow
	dDeny
)

// New builds the Authorizer of a token with these policies; defaultAllow is
// the cluster's default policy, applied where no rule matches.
func New(defaultAllow bool, policies ...*Policy) *Authorizer {
	a := &Authorizer{defaultAllow: defaultAllow, trees: map[Resource]*iradix.Tree{}}
	for _, p := range policies {
		if p == nil {
			continue
		}
		a.operator = merge(a.operator, p.Operator)
		a.acl = merge(a.acl, p.ACL)
		for _, r := range p.Rules {
			t := a.trees[r.Resource]
			if t == nil {
				t = iradix.New()
			}
			n := &node{}
			if old, ok := t.Get([]byte(r.Name)); ok {
				c := *old.(*node)
				n = &c
			}
			if r.Prefix {
				n.prefix = merge(n.prefix, r.Access)
			} else {
				n.exact = merge(n.exact, r.Access)
			}
			t, _, _ = t.Insert([]byte(r.Name), n)
			a.trees[r.Resource] = t
		}
	}
	return a
}

// Manage returns the Authorizer of a management token: everything allowed.
func Manage() *Authorizer { return &Authorizer{defaultAllow: true, manage: true} }

// AllowAll and DenyAll are the Authorizers of ACLs off and of nothing.
func AllowAll() *Authorizer { return &Authorizer{defaultAllow: true} }

// DenyAll allows nothing.
func DenyAll() *Authorizer { return &Authorizer{} }

// IsManagement reports whether the token may do everything, ACLs included.
func (a *Authorizer) IsManagement() bool { return a.manage || a.acl == AccessWrite }

// enforce applies Consul's rule: write grants read, list and write; list
// grants read and list; read grants read; deny grants nothing.
func enforce(rule, need Access) decision {
	switch rule {
	case AccessWrite:
		return dAllow
	case AccessList:
		if need == AccessRead || need == AccessList {
			return dAllow
		}
		return dDeny
	case AccessRead:
		if need == AccessRead {
			return dAllow
		}
		return dDeny
	case AccessDeny:
		return dDeny
	}
	return dDefault
}

// lookup returns the rule that applies to name: its exact rule, else the
// longest prefix rule at or above it.
func (a *Authorizer) lookup(res Resource, name string) Access {
	t := a.trees[res]
	if t == nil {
		return AccessNone
	}
	if raw, ok := t.Get([]byte(name)); ok && raw.(*node).exact != AccessNone {
		return raw.(*node).exact
	}
	// The longest prefix that carries a prefix rule: walk up the path.
	var found Access
	t.Root().WalkPath([]byte(name), func(_ []byte, v any) bool {
		if n := v.(*node); n.prefix != AccessNone {
			found = n.prefix
		}
		return false
	})
	return found
}

func (a *Authorizer) allowed(d decision) bool {
	switch d {
	case dAllow:
		return true
	case dDeny:
		return false
	}
	return a.defaultAllow
}

func (a *Authorizer) check(res Resource, name string, need Access) bool {
	if a.manage {
		return true
	}
	return a.allowed(enforce(a.lookup(res, name), need))
}

// Allowed reports whether the token may act on a name of a resource at a
// level (AccessRead, AccessList or AccessWrite).
func (a *Authorizer) Allowed(res Resource, name string, need Access) bool {
	return a.check(res, name, need)
}

// KeyRead, KeyList and KeyWrite check one KV key.
func (a *Authorizer) KeyRead(key string) bool  { return a.check(Key, key, AccessRead) }
func (a *Authorizer) KeyList(key string) bool  { return a.check(Key, key, AccessList) }
func (a *Authorizer) KeyWrite(key string) bool { return a.check(Key, key, AccessWrite) }

// KeyWritePrefix reports whether the token may write every key under
// prefix, as a recursive delete needs: the rule that applies to the prefix
// must allow writes, and so must every rule under it.
func (a *Authorizer) KeyWritePrefix(prefix string) bool {
	if a.manage {
		return true
	}
	if !a.allowed(enforce(a.lookup(Key, prefix), AccessWrite)) {
		return false
	}
	ok := true
	if t := a.trees[Key]; t != nil {
		t.Root().WalkPrefix([]byte(prefix), func(_ []byte, v any) bool {
			n := v.(*node)
			for _, r := range []Access{n.exact, n.prefix} {
				if r != AccessNone && r != AccessWrite {
					ok = false
				}
			}
			return !ok
		})
	}
	return ok
}

// ServiceRead, ServiceWrite, NodeRead, NodeWrite, SessionRead, SessionWrite
// (by the session's node), EventRead, EventWrite, AgentRead and AgentWrite
// (by the agent's node) check one name.
func (a *Authorizer) ServiceRead(name string) bool  { return a.check(Service, name, AccessRead) }
func (a *Authorizer) ServiceWrite(name string) bool { return a.check(Service, name, AccessWrite) }
func (a *Authorizer) NodeRead(name string) bool     { return a.check(Node, name, AccessRead) }
func (a *Authorizer) NodeWrite(name string) bool    { return a.check(Node, name, AccessWrite) }
func (a *Authorizer) SessionRead(node string) bool  { return a.check(Session, node, AccessRead) }
func (a *Authorizer) SessionWrite(node string) bool { return a.check(Session, node, AccessWrite) }
func (a *Authorizer) EventRead(name string) bool    { return a.check(Event, name, AccessRead) }
func (a *Authorizer) EventWrite(name string) bool   { return a.check(Event, name, AccessWrite) }
func (a *Authorizer) AgentRead(node string) bool    { return a.check(Agent, node, AccessRead) }
func (a *Authorizer) AgentWrite(node string) bool   { return a.check(Agent, node, AccessWrite) }

// NodeReadAll reports whether every node may be read (Consul's check for
// listing members), which a node_prefix "" read rule gives.
func (a *Authorizer) NodeReadAll() bool { return a.NodeRead("") && !a.anyBelow(Node, AccessRead) }

func (a *Authorizer) anyBelow(res Resource, need Access) bool {
	bad := false
	if t := a.trees[res]; t != nil {
		t.Root().Walk(func(_ []byte, v any) bool {
			n := v.(*node)
			for _, r := range []Access{n.exact, n.prefix} {
				if r != AccessNone && enforce(r, need) == dDeny {
					bad = true
				}
			}
			return bad
		})
	}
	return bad
}

// OperatorRead, OperatorWrite, ACLRead and ACLWrite check the one-level
// rules; acl = "write" is what a management token holds.
func (a *Authorizer) OperatorRead() bool {
	return a.manage || a.allowed(enforce(a.operator, AccessRead))
}
func (a *Authorizer) OperatorWrite() bool {
	return a.manage || a.allowed(enforce(a.operator, AccessWrite))
}

// Unlike Consul, the default policy never grants acl: with
// -acl-default-policy allow, managing tokens still needs an acl rule, so
// the anonymous token cannot mint itself a management token.
func (a *Authorizer) ACLRead() bool  { return a.manage || enforce(a.acl, AccessRead) == dAllow }
func (a *Authorizer) ACLWrite() bool { return a.manage || enforce(a.acl, AccessWrite) == dAllow }

// ManagementRules are the rules of the builtin global-management policy.
const ManagementRules = `acl = "write"
operator = "write"
agent_prefix "" { policy = "write" }
event_prefix "" { policy = "write" }
key_prefix "" { policy = "write" }
node_prefix "" { policy = "write" }
service_prefix "" { policy = "write" }
session_prefix "" { policy = "write" }
query_prefix "" { policy = "write" }
keyring = "write"
`
