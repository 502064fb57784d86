// Package local is the agent state of one node: the services and checks
// registered on it (from config files and through /v1/agent/*), the checks
// it runs (package checks), maintenance mode, and the anti-entropy that keeps
// the catalog's copy of the node equal to it. It is shared by the two kinds
// of agent: `kvx agent` (package agent), which reaches the catalog over HTTP,
// and every `kvx server`, the agent of its own node, which writes the
// catalog through Raft. Both serve the /v1/agent/* endpoints of Handler.
//
// # Anti-entropy
//
// The local state is the truth for its node. A sync reads the node from the
// catalog (Catalog.NodeState) and writes only the differences: a missing or
// changed service or check is registered, a service or check of the node
// that the agent does not know is deregistered (except the ones the
// catalog's owner keeps: serfHealth and a server's consul service). A sync
// runs at start, on every local change (the HTTP handlers wait for it, so a
// 200 means the catalog has it), when a check's status or output changes
// (package checks calls back only then: steady checks cost no writes), and
// every Options.SyncInterval with ±25% jitter, which puts back what was
// removed from the catalog behind the agent's back. A failed sync is retried
// after a second, doubling up to the interval.
//
// # Maintenance
//
// Node maintenance adds the critical check _node_maintenance, service
// maintenance _service_maintenance:<id>, with Consul's names and notes.
//
// This package must not import consul/api, raft or the server: it sees the
// catalog only through the Catalog interface.
package local
