package state

import (
	"bytes"
	"fmt"
	"maps"
	"strings"
	"sync"

	memdb "github.com/hashicorp/go-memdb"
)

// Entry is one KV pair with Consul's bookkeeping fields.
type Entry struct {
	Key         string
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Flags       uint64
	Value       []byte
	Session     string
}

// sameContent reports whether a write of e over old would change nothing
// a reader can see.
func (e *Entry) sameContent(old *Entry) bool {
	return old.Flags == e.Flags && old.Session == e.Session && bytes.Equal(old.Value, e.Value)
}

// withoutValue returns a copy of e with its value left out, as Consul answers
// txn write verbs.
func (e *Entry) withoutValue() *Entry {
	c := *e
	c.Value = nil
	return &c
}

// Tombstone marks a deleted key and the index it was deleted at.
type Tombstone struct {
	Key   string
	Index uint64
}

type tableIndex struct {
	Name  string
	Value uint64
}

const (
	tableKVs        = "kvs"
	tableTombstones = "tombstones"
	tableIndexes    = "index"
)

func schema() *memdb.DBSchema {
	keyed := func(name string) *memdb.TableSchema {
		return &memdb.TableSchema{
			Name: name,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: keyIndex{}}, // Key, or tableIndex.Name
			},
		}
	}
	kvs := keyed(tableKVs)
	// The keys a session holds, for its invalidation; an entry without a
	// session is not in this index.
	kvs.Indexes["session"] = &memdb.IndexSchema{Name: "session", AllowMissing: true,
		Indexer: &memdb.StringFieldIndex{Field: "Session", Lowercase: true}}
	tables := map[string]*memdb.TableSchema{
		tableKVs:        kvs,
		tableTombstones: keyed(tableTombstones),
		tableIndexes:    keyed(tableIndexes),
	}
	maps.Copy(tables, catalogTables())
	maps.Copy(tables, sessionTables())
	maps.Copy(tables, eventTables())
	maps.Copy(tables, aclTables())
	return &memdb.DBSchema{Tables: tables}
}

// Store holds the state. Reads are lock-free snapshots; writes are serialised
// by the caller (the Raft FSM goroutine) and by memdb's writer lock.
type Store struct {
	mu      sync.RWMutex // guards db and abandon, replaced on Restore
	db      *memdb.MemDB
	abandon chan struct{}
	delays  lockDelays // kept across a restore: they are not state
}

// New returns an empty store.
func New() *Store {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(fmt.Sprintf("state schema: %v", err)) // a broken invariant: the schema is static
	}
	return &Store{db: db, abandon: make(chan struct{})}
}

// ReadTxn is a consistent, read-only view of the store at one moment.
type ReadTxn struct {
	txn     *memdb.Txn
	abandon <-chan struct{}
}

// Read opens a read-only view of the current state.
func (s *Store) Read() *ReadTxn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &ReadTxn{txn: s.db.Txn(false), abandon: s.abandon}
}

// AbandonCh is closed when the store is replaced by a snapshot restore; a
// blocking query must watch it, because the restored state has new channels.
func (r *ReadTxn) AbandonCh() <-chan struct{} { return r.abandon }

func maxIndexTxn(txn *memdb.Txn, tables ...string) uint64 {
	var max uint64
	for _, t := range tables {
		raw, err := txn.First(tableIndexes, "id", t)
		if err != nil {
			panic(fmt.Sprintf("read index %s: %v", t, err))
		}
		if raw != nil && raw.(*tableIndex).Value > max {
			max = raw.(*tableIndex).Value
		}
	}
	return max
}

// KVIndex is the global KV index: the larger of the kvs and tombstones tables'
// indexes. It is the index of a missing key.
func (r *ReadTxn) KVIndex() uint64 { return maxIndexTxn(r.txn, tableKVs, tableTombstones) }

// Index returns the highest index of any table, the index of the whole store.
func (r *ReadTxn) Index() uint64 {
	return maxIndexTxn(r.txn, tableKVs, tableTombstones, tableIndexes, tableNodes, tableServices, tableChecks, tableSessions)
}

// KVGet returns the entry at key (nil when missing) and the index of the
// answer: the entry's ModifyIndex, or the global KV index when it is missing.
func (r *ReadTxn) KVGet(ws memdb.WatchSet, key string) (uint64, *Entry) {
	ch, raw, err := r.txn.FirstWatch(tableKVs, "id", key)
	if err != nil {
		panic(fmt.Sprintf("kv get %q: %v", key, err))
	}
	ws.Add(ch)
	if raw == nil {
		return r.KVIndex(), nil
	}
	e := raw.(*Entry)
	return e.ModifyIndex, e
}

// KVEntry returns the entry at key, nil when missing, without the index
// of the answer (KVGet) or a watch.
func (r *ReadTxn) KVEntry(key string) *Entry {
	raw, err := r.txn.First(tableKVs, "id", key)
	if err != nil {
		panic(fmt.Sprintf("kv get %q: %v", key, err))
	}
	if raw == nil {
		return nil
	}
	return raw.(*Entry)
}

func (r *ReadTxn) prefixIter(ws memdb.WatchSet, table, prefix string) memdb.ResultIterator {
	it, err := r.txn.Get(table, "id_prefix", prefix)
	if err != nil {
		panic(fmt.Sprintf("prefix %s %q: %v", table, prefix, err))
	}
	ws.Add(it.WatchCh())
	return it
}

// prefixIndex applies Consul's rule for the index of a prefix: the larger of
// the entries' ModifyIndex and the highest tombstone under the prefix, or the
// global KV index when both are 0.
func (r *ReadTxn) prefixIndex(ws memdb.WatchSet, prefix string, entriesMax uint64) uint64 {
	idx := entriesMax
	it := r.prefixIter(ws, tableTombstones, prefix)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if t := raw.(*Tombstone); t.Index > idx {
			idx = t.Index
		}
	}
	if idx == 0 {
		idx = r.KVIndex()
	}
	return idx
}

// KVList returns every entry whose key starts with prefix, in key order, and
// the index of the prefix.
func (r *ReadTxn) KVList(ws memdb.WatchSet, prefix string) (uint64, []*Entry) {
	var out []*Entry
	var max uint64
	it := r.prefixIter(ws, tableKVs, prefix)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*Entry)
		out = append(out, e)
		if e.ModifyIndex > max {
			max = e.ModifyIndex
		}
	}
	return r.prefixIndex(ws, prefix, max), out
}

// KVKeys returns the keys under prefix, collapsed at the first separator after
// the prefix when sep is not empty, and the index of the prefix.
func (r *ReadTxn) KVKeys(ws memdb.WatchSet, prefix, sep string) (uint64, []string) {
	var out []string
	var max uint64
	last := ""
	it := r.prefixIter(ws, tableKVs, prefix)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*Entry)
		if e.ModifyIndex > max {
			max = e.ModifyIndex
		}
		k := e.Key
		if sep != "" {
			if i := strings.Index(k[len(prefix):], sep); i >= 0 {
				k = k[:len(prefix)+i+len(sep)]
			}
		}
		if k != last || len(out) == 0 {
			out = append(out, k)
			last = k
		}
	}
	return r.prefixIndex(ws, prefix, max), out
}

// indexReaped names the index entry of the last reap of tombstones.
const indexReaped = "tombstones_reaped"

// ReapIndex is the index of the last reap of tombstones (0: none). An
// answer read at a KV index is the same for every read that sees the same
// KV index and ReapIndex: only a reap can take a prefix's index back.
func (r *ReadTxn) ReapIndex() uint64 {
	v, _ := r.ownIndex(nil, indexReaped)
	return v
}

// Tombstones returns every tombstone, in key order.
func (r *ReadTxn) Tombstones() []*Tombstone {
	var out []*Tombstone
	it := r.prefixIter(memdb.NewWatchSet(), tableTombstones, "")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Tombstone))
	}
	return out
}
