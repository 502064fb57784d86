// Package state is the server's in-memory MVCC store: KV entries, the
// tombstones that keep prefix indexes from going backwards after deletes, and
// per-table indexes. It is built on hashicorp/go-memdb, so every read can add
// the watch channels of exactly the radix nodes it touched to a WatchSet, and a
// blocking query costs nothing until its data changes.
//
// The store is deterministic: every write takes the Raft index it is applied
// at, and the same sequence of writes gives the same state on every node.
// It must not know about Raft, HTTP or the wire format; pkg/server owns those.
package state
