// Package acl is kvx's access control core: it parses policies written in
// Consul's rule syntax (HCL or JSON, through github.com/hashicorp/hcl) and
// answers, for a token's set of policies, what the token may do.
//
// # Rules
//
// A policy is a list of rules on resources. The segmented resources (key,
// service, node, session, event, agent) take rules on an exact name
// (`key "a/b" { policy = "read" }`) or on a prefix (`key_prefix "a/" {...}`);
// operator and acl take one level (`operator = "read"`). The levels are
// read, list (key rules only: read and list), write (all three) and deny.
// Rule kinds Consul has and kvx does not serve (query, keyring, mesh,
// peering, intentions...) are accepted and ignored, so a Consul policy file
// loads unchanged; anything else is an error naming the rule and line.
//
// # Decisions
//
// For a name, an exact rule wins over every prefix rule; otherwise the
// longest matching prefix rule decides; with no rule, the default policy
// (allow or deny) does. When several policies of one token have a rule on
// the same name (or the same prefix), deny wins, then write, list, read
// (Consul's merge). KeyWritePrefix, for recursive deletes, needs write on
// the prefix and on every rule under it.
//
// The package imports nothing of kvx: the server (and later the DNS server)
// build Authorizers from the policies in their state.
package acl
