// Package server is kvx's embedded server: a hashicorp/raft node whose FSM is
// the go-memdb store of package state, serving Consul's HTTP API (KV, txn,
// catalog, health, status, agent, operator) so that Consul's own clients
// work against it.
//
// # Storage
//
// The Raft log and stable store is raft-wal, behind a raft.LogCache; snapshots
// go to a raft.FileSnapshotStore (two kept). raft-wal was measured against
// raft-boltdb/v2 with `kvx bench kv` on the 2-core machine, one durable node,
// 128-byte values, 5 s per run:
//
//	              64 writers   1 writer
//	raft-wal      17,591/s     2,410/s   (p99 9.2 ms / 1.2 ms)
//	raft-boltdb   13,197/s     1,142/s   (p99 11.3 ms / 2.4 ms)
//
// raft-wal makes one fsync per append batch where bolt makes two, and does no
// B-tree bookkeeping, so it is faster at every concurrency; it is what Consul
// 1.22 uses on fresh data dirs. -dev keeps log, stable store and snapshots in
// memory; as only a snapshot truncates that log, -dev snapshots every 4096
// entries (checked every 200-400 ms) and keeps 1024, which holds its RSS
// near 50 MB under a sustained write load where raft's defaults let it grow
// by about 1.5 KB per write for minutes.
//
// # Identity
//
// A durable node writes its name, datacenter, addresses and cluster ID to
// <data-dir>/node-identity.json at its first start, and takes from it what a
// restart does not give; options that contradict it are refused
// (identity.go).
//
// # Logs
//
// Raft logs through hclog, implemented over the server's slog logger
// (hclog.go), which also sets the level of the Raft messages that are normal
// in one case and a fault in another; a stopping server says goodbye to its
// peers so that its absence is not logged as an error. Requests are logged
// by one wrapper (http_log.go): failures at Info, everything at Debug.
//
// # Writes and reads
//
// Every write is one Raft entry (see command.go for the format); the FSM
// implements raft.BatchingFSM and applies a batch of KV writes in one memdb
// transaction, so a burst costs one commit and one round of watch wake-ups.
// The index of every entry is its Raft index, as in Consul.
//
// Writes and default reads on a follower are forwarded to the leader as HTTP
// over the Raft port (see mux.go); ?stale reads are answered locally;
// ?consistent reads first confirm leadership with VerifyLeader.
//
// A fleet following a file costs one exchange per node and version: a KV
// read may ask for more keys from the same state (X-Kvx-Read) and carry an
// acknowledgement to write (X-Kvx-Ack), both in kv_follow.go; the
// acknowledgements of many nodes become a few Raft entries (kv_acks.go;
// a follower hands its batch to the leader). Answers of 1 kB and more are
// gzipped for clients that accept it, a shared answer once (http_gzip.go).
// HTTP request metrics are counted in atomics and reported once a second
// (http_metrics.go). The HTTP server itself is pkg/httpd.
//
// Every connection on the Raft port carries the cluster ID (clusterid.go), so
// a node never exchanges Raft traffic or forwarded writes with another
// cluster's server that happens to sit at a peer's old address.
//
// Blocking queries read through a memdb WatchSet: the query sleeps on the
// channels of exactly the radix nodes it read, so an idle query costs no CPU.
//
// # Index rules
//
// One key's index is its ModifyIndex, or the global KV index when missing.
// A prefix's index is the largest ModifyIndex or tombstone index under it, or
// the global index when both are 0. Deletes leave tombstones so a prefix's
// index never goes backwards; the leader reaps them through Raft after
// Options.TombstoneTTL (15 minutes). A write that changes nothing keeps the
// old ModifyIndex.
//
// # DNS
//
// With Options.DNS, a server also answers Consul's DNS interface (package
// pkg/dns) from its state store (dns.go): each service's instances are
// converted once and kept until the store's watch channels for that service
// close, so a query on a warm service reads no memdb at all. With
// DNSNoStale a follower answers only while in touch with its leader.
//
// # Catalog and health
//
// Catalog writes are Raft commands of their own (catalog_command.go), each
// applied in its own memdb transaction so that a refused one changes
// nothing. The reads (http_catalog.go, http_health.go) are blocking queries
// like the KV ones, with Consul's filters (catalog_query.go) and wire format
// (catalog_json.go). A query on one service watches only that service's index
// entry in the state store, so a change elsewhere wakes none of its watchers;
// the watchers woken together share one encoded answer (catalog_cache.go).
// The leader registers every server of the cluster with a passing serfHealth
// check and the consul service (catalog_self.go), and each server is the
// agent of its own node for /v1/agent/services, checks, service/*, check/*,
// health/service/* and maintenance, with the agent state and handlers
// `kvx agent` uses (package agent/local, wired in agent_local.go: its
// catalog is this server's, read on the leader, written through Raft);
// /v1/agent/members lists the servers and agents from the catalog. The
// leader marks critical the
// nodes of agents whose heartbeats stopped (heartbeat.go). After a burst of
// work, an idle server returns freed memory to the kernel (memory.go).
//
// # Sessions, locks and events
//
// Sessions (state/session.go, http_session.go) are Raft commands of their
// own (session_command.go): the leader picks a new session's ID, so every
// node applies the same. A session is invalidated in the same transaction
// as what invalidates it (its destroy, a check of it turning critical or
// going away, its node leaving the catalog): the keys it holds are released
// or deleted there, and each server records, in memory, the lock delay of
// the released keys, which the leader checks before an ?acquire. TTL
// timers live in the leader's memory (session_ttl.go); a new leader starts
// a full period for every session. User events (http_event.go) are Raft
// entries too, since there is no gossip: every server keeps the last 256 and
// lists those whose filters match its own node.
//
// # ACLs
//
// With Options.ACL.Enabled, tokens and policies are state tables written
// through Raft (acl_command.go) and kept in snapshots; the endpoints are
// Consul's /v1/acl/ (http_acl.go). A request's token (?token=,
// X-Consul-Token, Authorization: Bearer) is resolved on the node that
// answers, after the forward decision, from that node's state: by the
// SHA-256 of the secret, which is all the state keeps unless KeepSecrets
// (acl.go). Its Authorizer (package acl) is built once per token and state
// of the ACL tables. Every handler checks what it does or filters what it
// lists with it, setting X-Consul-Results-Filtered-By-ACLs; a blocking query
// watches the ACL tables and resolves its token again each time it wakes,
// so a deleted or expired token gets 403 and nothing more. The answer cache
// shares only unfiltered (management) answers. AuthorizerFor gives callers
// outside HTTP (DNS) the Authorizer of a token, the agent token by default.
//
// # TLS and hardening
//
// The API is served over HTTP, HTTPS or both; with a CA, the Raft port
// speaks mutual TLS, each side checking that the other's certificate names
// server.<dc>.<domain>, with the cluster ID handshake inside (tls.go).
// Certificates live in a tlsutil.Store that ReloadTLS (SIGHUP) swaps. Every
// HTTP server has a header timeout and an idle timeout but no timeout on
// a whole request (blocking queries), a cap on connections per client IP,
// a cap on request bodies, and turns a handler's panic into a logged 500
// (http_harden.go).
//
// Only this package imports raft. It must not import consul/api outside tests.
package server
