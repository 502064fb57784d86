package state

import (
	"errors"
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// ACL tokens and policies. A token is found by its AccessorID or by the
// SHA-256 of its SecretID; the secret itself is kept only when the server
// does not hash secrets (-acl-hash-secrets=false). The index entry
// indexACLBootstrap holds the index of the bootstrap, 0 before it.

// ACLLink names a policy of a token; the state keeps the ID, the server
// fills in the current name when it answers.
type ACLLink struct {
	ID   string
	Name string
}

// ACLToken is one token.
type ACLToken struct {
	AccessorID     string
	SecretHash     string // hex SHA-256 of the SecretID
	SecretID       string `json:",omitempty"` // only without -acl-hash-secrets
	Description    string
	Policies       []ACLLink
	Local          bool
	ExpirationTime *time.Time    `json:",omitempty"`
	ExpirationTTL  time.Duration `json:",omitempty"`
	CreateTime     time.Time
	CreateIndex    uint64
	ModifyIndex    uint64
}

// Expired reports whether the token has expired at now.
func (t *ACLToken) Expired(now time.Time) bool {
	return t.ExpirationTime != nil && !now.Before(*t.ExpirationTime)
}

// ACLPolicy is one policy: rules in Consul's syntax, parsed by package acl.
type ACLPolicy struct {
	ID          string
	Name        string
	Description string
	Rules       string
	Datacenters []string
	CreateIndex uint64
	ModifyIndex uint64
}

const (
	tableACLTokens    = "acl_tokens"
	tableACLPolicies  = "acl_policies"
	indexACLBootstrap = "acl_bootstrap"
)

// ErrACL wraps every refusal of an ACL write.
var ErrACL = errors.New("acl")

// ErrBootstrapped refuses a second bootstrap; ResetIndex is what the reset
// file must hold to allow one more.
type ErrBootstrapped struct{ ResetIndex uint64 }

func (e *ErrBootstrapped) Error() string {
	return fmt.Sprintf("ACL bootstrap no longer allowed (reset index: %d)", e.ResetIndex)
}

func aclTables() map[string]*memdb.TableSchema {
	return map[string]*memdb.TableSchema{
		tableACLTokens: {Name: tableACLTokens, Indexes: map[string]*memdb.IndexSchema{
			"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "AccessorID"}},
			"secret": {Name: "secret", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "SecretHash"}},
		}},
		tableACLPolicies: {Name: tableACLPolicies, Indexes: map[string]*memdb.IndexSchema{
			"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			"name": {Name: "name", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
	}
}

// ACLTokenSet creates or replaces a token, keeping the CreateIndex of the
// one it replaces. A secret another token has is refused.
func (w *WriteTxn) ACLTokenSet(t *ACLToken) error {
	if t.AccessorID == "" || t.SecretHash == "" {
		return fmt.Errorf("%w: token without accessor or secret", ErrACL)
	}
	if raw := w.first(tableACLTokens, "secret", t.SecretHash); raw != nil && raw.(*ACLToken).AccessorID != t.AccessorID {
		return fmt.Errorf("%w: a token with this SecretID already exists", ErrACL)
	}
	c := *t
	c.CreateIndex = w.index
	if raw := w.first(tableACLTokens, "id", t.AccessorID); raw != nil {
		c.CreateIndex = raw.(*ACLToken).CreateIndex
	}
	c.ModifyIndex = w.index
	w.insert(tableACLTokens, &c)
	w.setIndex(tableACLTokens, w.index)
	return nil
}

// ACLTokenDelete deletes a token; a missing one is no error.
func (w *WriteTxn) ACLTokenDelete(accessor string) {
	if raw := w.first(tableACLTokens, "id", accessor); raw != nil {
		w.remove(tableACLTokens, raw)
		w.setIndex(tableACLTokens, w.index)
	}
}

// ACLPolicySet creates or replaces a policy; a name another policy has is
// refused.
func (w *WriteTxn) ACLPolicySet(p *ACLPolicy) error {
	if p.ID == "" || p.Name == "" {
		return fmt.Errorf("%w: policy without ID or name", ErrACL)
	}
	if raw := w.first(tableACLPolicies, "name", p.Name); raw != nil && raw.(*ACLPolicy).ID != p.ID {
		return fmt.Errorf("%w: Invalid Policy: A Policy with Name %q already exists", ErrACL, p.Name)
	}
	c := *p
	c.CreateIndex = w.index
	if raw := w.first(tableACLPolicies, "id", p.ID); raw != nil {
		c.CreateIndex = raw.(*ACLPolicy).CreateIndex
	}
	c.ModifyIndex = w.index
	w.insert(tableACLPolicies, &c)
	w.setIndex(tableACLPolicies, w.index)
	return nil
}

// ACLPolicyDelete deletes a policy; tokens that link it keep the link,
// which resolves to nothing (as Consul).
func (w *WriteTxn) ACLPolicyDelete(id string) {
	if raw := w.first(tableACLPolicies, "id", id); raw != nil {
		w.remove(tableACLPolicies, raw)
		w.setIndex(tableACLPolicies, w.index)
	}
}

// ACLBootstrap stores the first management token and its policy, once:
// again only when resetIndex is the index of the previous bootstrap.
func (w *WriteTxn) ACLBootstrap(resetIndex uint64, t *ACLToken, p *ACLPolicy) error {
	r := ReadTxn{txn: w.txn}
	if done, _ := r.ownIndex(nil, indexACLBootstrap); done != 0 && done != resetIndex {
		return &ErrBootstrapped{ResetIndex: done}
	}
	if err := w.ACLPolicySet(p); err != nil {
		return err
	}
	if err := w.ACLTokenSet(t); err != nil {
		return err
	}
	w.setIndex(indexACLBootstrap, w.index)
	return nil
}

// ACLBootstrapIndex is the index of the bootstrap, 0 before it.
func (r *ReadTxn) ACLBootstrapIndex() uint64 {
	v, _ := r.ownIndex(nil, indexACLBootstrap)
	return v
}

// ACLIndex is the index of the tokens and policies tables, watching both:
// a blocking query that re-resolves its token wakes when either changes.
func (r *ReadTxn) ACLIndex(ws memdb.WatchSet) uint64 {
	return r.tableIndexWatch(ws, tableACLTokens, tableACLPolicies)
}

func (r *ReadTxn) aclFirst(table, index, arg string) any {
	raw, err := r.txn.First(table, index, arg)
	if err != nil {
		panic(fmt.Sprintf("%s %s: %v", table, index, err))
	}
	return raw
}

// ACLTokenBySecretHash returns the token whose secret hashes to hash.
func (r *ReadTxn) ACLTokenBySecretHash(hash string) *ACLToken {
	if raw := r.aclFirst(tableACLTokens, "secret", hash); raw != nil {
		return raw.(*ACLToken)
	}
	return nil
}

// ACLToken returns the token with this AccessorID.
func (r *ReadTxn) ACLToken(accessor string) *ACLToken {
	if raw := r.aclFirst(tableACLTokens, "id", accessor); raw != nil {
		return raw.(*ACLToken)
	}
	return nil
}

// ACLTokens returns every token, by AccessorID.
func (r *ReadTxn) ACLTokens() []*ACLToken {
	var out []*ACLToken
	it := r.prefixIter(memdb.NewWatchSet(), tableACLTokens, "")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*ACLToken))
	}
	return out
}

// ACLPolicy returns the policy with this ID.
func (r *ReadTxn) ACLPolicy(id string) *ACLPolicy {
	if raw := r.aclFirst(tableACLPolicies, "id", id); raw != nil {
		return raw.(*ACLPolicy)
	}
	return nil
}

// ACLPolicyByName returns the policy with this name.
func (r *ReadTxn) ACLPolicyByName(name string) *ACLPolicy {
	if raw := r.aclFirst(tableACLPolicies, "name", name); raw != nil {
		return raw.(*ACLPolicy)
	}
	return nil
}

// ACLPolicies returns every policy, by ID.
func (r *ReadTxn) ACLPolicies() []*ACLPolicy {
	var out []*ACLPolicy
	it := r.prefixIter(memdb.NewWatchSet(), tableACLPolicies, "")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*ACLPolicy))
	}
	return out
}
