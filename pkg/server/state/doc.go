// Package state is the server's in-memory MVCC store: KV entries, the
// tombstones that keep prefix indexes from going backwards after deletes,
// the catalog (nodes, services, checks; catalog*.go), and per-table indexes,
// with one index entry per service and per node that every change to what a
// query on it reads moves, and that outlives the service or node. It is
// built on hashicorp/go-memdb, so every read can add the watch channels of
// exactly the radix nodes it touched to a WatchSet, and a blocking query
// costs nothing until its data changes.
//
// The store is deterministic: every write takes the Raft index it is applied
// at, and the same sequence of writes gives the same state on every node.
// It must not know about Raft, HTTP or the wire format; pkg/server owns those.
package state
