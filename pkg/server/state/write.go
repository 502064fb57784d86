package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// Verb is a KV operation, named as in Consul's txn API.
type Verb string

// The KV verbs. Lock, unlock and check-session take a session (see
// session.go).
const (
	VerbSet            Verb = "set"
	VerbCAS            Verb = "cas"
	VerbLock           Verb = "lock"
	VerbUnlock         Verb = "unlock"
	VerbGet            Verb = "get"
	VerbGetOrEmpty     Verb = "get-or-empty"
	VerbGetTree        Verb = "get-tree"
	VerbCheckIndex     Verb = "check-index"
	VerbCheckSession   Verb = "check-session"
	VerbCheckNotExists Verb = "check-not-exists"
	VerbDelete         Verb = "delete"
	VerbDeleteTree     Verb = "delete-tree"
	VerbDeleteCAS      Verb = "delete-cas"
)

var verbs = map[Verb]struct{ write, known bool }{
	VerbSet: {true, true}, VerbCAS: {true, true}, VerbLock: {true, true}, VerbUnlock: {true, true},
	VerbDelete: {true, true}, VerbDeleteTree: {true, true}, VerbDeleteCAS: {true, true},
	VerbGet: {false, true}, VerbGetOrEmpty: {false, true}, VerbGetTree: {false, true},
	VerbCheckIndex: {false, true}, VerbCheckSession: {false, true}, VerbCheckNotExists: {false, true},
}

// Known reports whether v is one of Consul's KV verbs.
func (v Verb) Known() bool { return verbs[v].known }

// Writes reports whether v changes state (and so must go through Raft).
func (v Verb) Writes() bool { return verbs[v].write }

// Op is one KV operation of a transaction or of a single KV request.
type Op struct {
	Verb    Verb
	Key     string
	Value   []byte
	Flags   uint64
	Index   uint64 // the CAS or check index
	Session string
}

// OpError says which operation of a transaction failed and why.
type OpError struct {
	OpIndex int
	What    string
}

func (e OpError) Error() string { return fmt.Sprintf("op %d: %s", e.OpIndex, e.What) }

// WriteTxn is an open write transaction at one Raft index.
type WriteTxn struct {
	txn   *memdb.Txn
	store *Store
	// delayed are the keys released by invalidated sessions, whose lock
	// delays start when the transaction commits.
	delayed []delayedKeys

	index uint64
	kvs   uint64 // index of the last change to the kvs table, 0 for none
	tombs uint64 // index of the last change to the tombstones table
	reap  uint64 // index of a reap of tombstones in this transaction
}

// Write opens a write transaction. Only one may be open at a time.
func (s *Store) Write() *WriteTxn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &WriteTxn{txn: s.db.Txn(true), store: s}
}

// At sets the Raft index that the following operations are applied at.
func (w *WriteTxn) At(index uint64) { w.index = index }

// Commit makes the changes visible and wakes the watchers of what changed.
func (w *WriteTxn) Commit() {
	if w.kvs != 0 {
		w.setIndex(tableKVs, w.kvs)
	}
	if w.tombs != 0 {
		w.setIndex(tableTombstones, w.tombs)
	}
	if w.reap != 0 {
		w.setIndex(indexReaped, w.reap)
	}
	w.txn.Commit()
	for _, d := range w.delayed {
		w.store.delays.set(d.keys, d.delay)
	}
	w.delayed = nil
}

// Abort drops every change of the transaction.
func (w *WriteTxn) Abort() { w.txn.Abort(); w.delayed = nil }

func (w *WriteTxn) setIndex(table string, index uint64) {
	if err := w.txn.Insert(tableIndexes, &tableIndex{Name: table, Value: index}); err != nil {
		panic(fmt.Sprintf("set index %s: %v", table, err))
	}
}

func (w *WriteTxn) get(key string) *Entry {
	raw, err := w.txn.First(tableKVs, "id", key)
	if err != nil {
		panic(fmt.Sprintf("kv get %q: %v", key, err))
	}
	if raw == nil {
		return nil
	}
	return raw.(*Entry)
}

func (w *WriteTxn) insert(table string, obj any) {
	if err := w.txn.Insert(table, obj); err != nil {
		panic(fmt.Sprintf("insert %s: %v", table, err))
	}
}

// set writes op's key, keeping CreateIndex, LockIndex and Session of an
// existing entry. A write that changes nothing keeps the old ModifyIndex.
func (w *WriteTxn) set(op *Op) *Entry {
	e := &Entry{Key: op.Key, Flags: op.Flags, Value: op.Value, CreateIndex: w.index, ModifyIndex: w.index}
	if old := w.get(op.Key); old != nil {
		e.CreateIndex, e.LockIndex, e.Session = old.CreateIndex, old.LockIndex, old.Session
		if e.sameContent(old) {
			return old
		}
	}
	w.insert(tableKVs, e)
	w.kvs = w.index
	return e
}

func (w *WriteTxn) delete(e *Entry) {
	if err := w.txn.Delete(tableKVs, e); err != nil {
		panic(fmt.Sprintf("delete %q: %v", e.Key, err))
	}
	w.insert(tableTombstones, &Tombstone{Key: e.Key, Index: w.index})
	w.kvs, w.tombs = w.index, w.index
}

// casOK reports whether a check-and-set at index may go ahead on key:
// index 0 means the key must not exist, otherwise its ModifyIndex must match.
func casOK(old *Entry, index uint64) bool {
	if index == 0 {
		return old == nil
	}
	return old != nil && old.ModifyIndex == index
}

// Apply runs one KV operation of the KV endpoint (set, cas, delete,
// delete-cas, delete-tree) and reports whether it took effect: a failed CAS is
// false, not an error.
func (w *WriteTxn) Apply(op *Op) (bool, error) {
	switch op.Verb {
	case VerbSet:
		w.set(op)
	case VerbCAS:
		if !casOK(w.get(op.Key), op.Index) {
			return false, nil
		}
		w.set(op)
	case VerbDelete:
		if old := w.get(op.Key); old != nil {
			w.delete(old)
		}
	case VerbDeleteCAS:
		old := w.get(op.Key)
		if old == nil {
			return true, nil
		}
		if old.ModifyIndex != op.Index {
			return false, nil
		}
		w.delete(old)
	case VerbDeleteTree:
		w.deleteTree(op.Key)
	case VerbLock:
		_, ok, err := w.lock(op)
		return ok, err
	case VerbUnlock:
		_, ok, err := w.unlock(op)
		return ok, err
	default:
		return false, fmt.Errorf("unknown KV verb %q", op.Verb)
	}
	return true, nil
}

func (w *WriteTxn) deleteTree(prefix string) {
	it, err := w.txn.Get(tableKVs, "id_prefix", prefix)
	if err != nil {
		panic(fmt.Sprintf("prefix %q: %v", prefix, err))
	}
	var doomed []*Entry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		doomed = append(doomed, raw.(*Entry))
	}
	for _, e := range doomed {
		w.delete(e)
	}
}

// ReapTombstones removes the tombstones at or below index.
func (w *WriteTxn) ReapTombstones(index uint64) int {
	it, err := w.txn.Get(tableTombstones, "id_prefix", "")
	if err != nil {
		panic(fmt.Sprintf("tombstones: %v", err))
	}
	var doomed []*Tombstone
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if t := raw.(*Tombstone); t.Index <= index {
			doomed = append(doomed, t)
		}
	}
	for _, t := range doomed {
		if err := w.txn.Delete(tableTombstones, t); err != nil {
			panic(fmt.Sprintf("reap %q: %v", t.Key, err))
		}
	}
	if len(doomed) > 0 {
		w.tombs, w.reap = w.index, w.index
	}
	return len(doomed)
}

// TxnResult is the outcome of a transaction: the entries its operations
// return, or the errors that rolled it back.
type TxnResult struct {
	Entries []*Entry
	Errors  []OpError
}

// kvReader is what the read-only verbs need; both a read and a write
// transaction provide it, so a read-only txn runs without Raft.
type kvReader interface {
	get(key string) *Entry
	list(prefix string) []*Entry
}

func (w *WriteTxn) list(prefix string) []*Entry {
	return (&ReadTxn{txn: w.txn}).list(prefix)
}

func (r *ReadTxn) get(key string) *Entry {
	_, e := r.KVGet(memdb.NewWatchSet(), key)
	return e
}

func (r *ReadTxn) list(prefix string) []*Entry {
	it, err := r.txn.Get(tableKVs, "id_prefix", prefix)
	if err != nil {
		panic(fmt.Sprintf("prefix %q: %v", prefix, err))
	}
	var out []*Entry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Entry))
	}
	return out
}

// readOp answers a read verb. ok is false with a reason when a check fails.
func readOp(r kvReader, op *Op) ([]*Entry, string) {
	switch op.Verb {
	case VerbGet:
		e := r.get(op.Key)
		if e == nil {
			return nil, fmt.Sprintf("key %q doesn't exist", op.Key)
		}
		return []*Entry{e}, ""
	case VerbGetOrEmpty:
		if e := r.get(op.Key); e != nil {
			return []*Entry{e}, ""
		}
		return []*Entry{{Key: op.Key}}, ""
	case VerbGetTree:
		return r.list(op.Key), ""
	case VerbCheckIndex:
		e := r.get(op.Key)
		if e == nil {
			return nil, fmt.Sprintf("key %q doesn't exist", op.Key)
		}
		if e.ModifyIndex != op.Index {
			return nil, fmt.Sprintf("failed index check for key %q, current modify index %d != %d", op.Key, e.ModifyIndex, op.Index)
		}
		return []*Entry{e.withoutValue()}, ""
	case VerbCheckNotExists:
		if r.get(op.Key) != nil {
			return nil, fmt.Sprintf("key %q exists", op.Key)
		}
		return nil, ""
	case VerbCheckSession:
		return checkSession(r, op)
	}
	return nil, fmt.Sprintf("unknown KV verb %q", op.Verb)
}

// Txn runs ops all or nothing. On any failure it returns the errors and the
// caller must Abort; on success the caller must Commit.
func (w *WriteTxn) Txn(ops []Op) TxnResult {
	var res TxnResult
	for i := range ops {
		op := &ops[i]
		if !op.Verb.Writes() {
			entries, why := readOp(w, op)
			if why != "" {
				res.Errors = append(res.Errors, OpError{OpIndex: i, What: why})
				continue
			}
			res.Entries = append(res.Entries, entries...)
			continue
		}
		switch op.Verb {
		case VerbSet:
			res.Entries = append(res.Entries, w.set(op).withoutValue())
		case VerbCAS:
			if !casOK(w.get(op.Key), op.Index) {
				res.Errors = append(res.Errors, OpError{i, fmt.Sprintf("failed to set key %q, index is stale", op.Key)})
				continue
			}
			res.Entries = append(res.Entries, w.set(op).withoutValue())
		case VerbLock:
			e, ok, err := w.lock(op)
			switch {
			case err != nil:
				res.Errors = append(res.Errors, OpError{i, err.Error()})
			case !ok:
				res.Errors = append(res.Errors, OpError{i, fmt.Sprintf("failed to lock key %q, lock is already held", op.Key)})
			default:
				res.Entries = append(res.Entries, e.withoutValue())
			}
		case VerbUnlock:
			e, ok, err := w.unlock(op)
			switch {
			case err != nil:
				res.Errors = append(res.Errors, OpError{i, err.Error()})
			case !ok:
				res.Errors = append(res.Errors, OpError{i, fmt.Sprintf("failed to unlock key %q, lock isn't held, or is held by another session", op.Key)})
			default:
				res.Entries = append(res.Entries, e.withoutValue())
			}
		case VerbDeleteCAS:
			ok, _ := w.Apply(op)
			if !ok {
				res.Errors = append(res.Errors, OpError{i, fmt.Sprintf("failed to delete key %q, index is stale", op.Key)})
			}
		default:
			if _, err := w.Apply(op); err != nil {
				res.Errors = append(res.Errors, OpError{i, err.Error()})
			}
		}
	}
	if len(res.Errors) > 0 {
		res.Entries = nil
	}
	return res
}

// Txn runs a read-only transaction against this view.
func (r *ReadTxn) Txn(ops []Op) TxnResult {
	var res TxnResult
	for i := range ops {
		entries, why := readOp(r, &ops[i])
		if why != "" {
			res.Errors = append(res.Errors, OpError{OpIndex: i, What: why})
			continue
		}
		res.Entries = append(res.Entries, entries...)
	}
	if len(res.Errors) > 0 {
		res.Entries = nil
	}
	return res
}
