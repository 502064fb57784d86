package state

import (
	"slices"
	"strings"
	"sync"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// Sessions, as Consul's: a session belongs to a node and to some of its
// checks, and holds KV locks (entries whose Session field names it). It is
// invalidated when it is destroyed (by a client, or by the leader when its
// TTL ran out), when one of its checks turns critical or goes away, or when
// its node leaves the catalog: it is deleted, and the keys it held are
// released (Behavior "release") or deleted (Behavior "delete"). A released
// key then refuses a new acquire for the session's LockDelay (see
// LockDelay): that lets a holder that lost its lock notice before another
// takes it.

// The session behaviors.
const (
	BehaviorRelease = "release"
	BehaviorDelete  = "delete"
)

// ServiceCheck names a check of a service instance that a session depends on.
type ServiceCheck struct {
	ID        string
	Namespace string
}

// Session is one session.
type Session struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	NodeChecks    []string
	ServiceChecks []ServiceCheck
	CreateIndex   uint64
	ModifyIndex   uint64
}

// checkIDs returns every check the session depends on.
func (s *Session) checkIDs() []string {
	out := slices.Clone(s.NodeChecks)
	for _, c := range s.ServiceChecks {
		out = append(out, c.ID)
	}
	return out
}

const tableSessions = "sessions"

func sessionTables() map[string]*memdb.TableSchema {
	return map[string]*memdb.TableSchema{
		tableSessions: {Name: tableSessions, Indexes: map[string]*memdb.IndexSchema{
			"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID", Lowercase: true}},
			"node": {Name: "node", Indexer: &memdb.StringFieldIndex{Field: "Node", Lowercase: true}},
		}},
	}
}

// lockDelays remembers, in memory, until when a key released by an
// invalidated session refuses a new acquire. As in Consul it is not part of
// the replicated state: every server records the delay when it applies the
// invalidation, and the leader, which takes the acquires, checks it.
type lockDelays struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (d *lockDelays) set(keys []string, delay time.Duration) {
	if len(keys) == 0 || delay <= 0 {
		return
	}
	until := time.Now().Add(delay)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.until == nil {
		d.until = map[string]time.Time{}
	}
	now := time.Now()
	for k, t := range d.until { // forget the delays that are over
		if t.Before(now) {
			delete(d.until, k)
		}
	}
	for _, k := range keys {
		d.until[k] = until
	}
}

type delayedKeys struct {
	keys  []string
	delay time.Duration
}

// LockDelay returns until when key refuses a new acquire: a time in the past
// (the zero time) when it does not.
func (s *Store) LockDelay(key string) time.Time {
	s.delays.mu.Lock()
	defer s.delays.mu.Unlock()
	return s.delays.until[key]
}

// SessionError is a refused session write or a session verb on a session
// that does not exist. The write changes nothing.
type SessionError struct{ Msg string }

func (e *SessionError) Error() string { return e.Msg }

func (w *WriteTxn) session(id string) *Session {
	if raw := w.first(tableSessions, "id", id); raw != nil {
		return raw.(*Session)
	}
	return nil
}

// SessionCreate adds a session, refusing it as Consul does when its node or
// one of its checks is missing, or a check is critical.
func (w *WriteTxn) SessionCreate(s *Session) error {
	if w.node(s.Node) == nil {
		return &SessionError{"Missing node registration"}
	}
	if w.session(s.ID) != nil {
		return &SessionError{"Session ID " + s.ID + " already exists"}
	}
	for _, id := range s.checkIDs() {
		raw := w.first(tableChecks, "id", s.Node, id)
		if raw == nil {
			return &SessionError{"Missing check '" + id + "' registration"}
		}
		if st := raw.(*Check).Status; st == HealthCritical {
			return &SessionError{"Check '" + id + "' is in " + st + " state"}
		}
	}
	c := *s
	c.CreateIndex, c.ModifyIndex = w.index, w.index
	w.insert(tableSessions, &c)
	w.setIndex(tableSessions, w.index)
	return nil
}

// SessionDestroy invalidates a session; a missing one is not an error.
func (w *WriteTxn) SessionDestroy(id string) {
	if s := w.session(id); s != nil {
		w.invalidate(s)
	}
}

// invalidate deletes a session and releases or deletes the keys it holds.
func (w *WriteTxn) invalidate(s *Session) {
	w.remove(tableSessions, s)
	w.setIndex(tableSessions, w.index)
	var held []*Entry
	for _, raw := range w.all(tableKVs, "session", s.ID) {
		held = append(held, raw.(*Entry))
	}
	keys := make([]string, 0, len(held))
	for _, e := range held {
		keys = append(keys, e.Key)
		if s.Behavior == BehaviorDelete {
			w.delete(e)
			continue
		}
		c := *e
		c.Session, c.ModifyIndex = "", w.index
		w.insert(tableKVs, &c)
		w.kvs = w.index
	}
	if len(keys) > 0 && s.LockDelay > 0 {
		w.delayed = append(w.delayed, delayedKeys{keys, s.LockDelay})
	}
}

// invalidateCheck invalidates the sessions of a node that depend on a check
// that turned critical or went away.
func (w *WriteTxn) invalidateCheck(node, checkID string) {
	var doomed []*Session
	for _, raw := range w.all(tableSessions, "node", node) {
		s := raw.(*Session)
		if slices.ContainsFunc(s.checkIDs(), func(id string) bool { return strings.EqualFold(id, checkID) }) {
			doomed = append(doomed, s)
		}
	}
	for _, s := range doomed {
		w.invalidate(s)
	}
}

// invalidateNode invalidates every session of a node leaving the catalog.
func (w *WriteTxn) invalidateNode(node string) {
	var doomed []*Session
	for _, raw := range w.all(tableSessions, "node", node) {
		doomed = append(doomed, raw.(*Session))
	}
	for _, s := range doomed {
		w.invalidate(s)
	}
}

// lock acquires op.Key for op.Session by Consul's rules: a new holder
// increments LockIndex, the holder may acquire again (its value is
// written, its LockIndex kept), another session is refused (false).
func (w *WriteTxn) lock(op *Op) (*Entry, bool, error) {
	if op.Session == "" {
		return nil, false, &SessionError{"missing session"}
	}
	if w.session(op.Session) == nil {
		return nil, false, &SessionError{"invalid session \"" + op.Session + "\""}
	}
	e := &Entry{Key: op.Key, Flags: op.Flags, Value: op.Value, Session: op.Session,
		CreateIndex: w.index, ModifyIndex: w.index, LockIndex: 1}
	if old := w.get(op.Key); old != nil {
		switch old.Session {
		case op.Session:
			e.LockIndex = old.LockIndex
		case "":
			e.LockIndex = old.LockIndex + 1
		default:
			return nil, false, nil
		}
		e.CreateIndex = old.CreateIndex
	}
	w.insert(tableKVs, e)
	w.kvs = w.index
	return e, true, nil
}

// unlock releases op.Key if op.Session holds it, writing the value.
func (w *WriteTxn) unlock(op *Op) (*Entry, bool, error) {
	if op.Session == "" {
		return nil, false, &SessionError{"missing session"}
	}
	old := w.get(op.Key)
	if old == nil || old.Session != op.Session {
		return nil, false, nil
	}
	e := &Entry{Key: op.Key, Flags: op.Flags, Value: op.Value, CreateIndex: old.CreateIndex,
		ModifyIndex: w.index, LockIndex: old.LockIndex}
	w.insert(tableKVs, e)
	w.kvs = w.index
	return e, true, nil
}

// checkSession answers the check-session verb.
func checkSession(r kvReader, op *Op) ([]*Entry, string) {
	e := r.get(op.Key)
	if e == nil {
		return nil, "failed to check session, key \"" + op.Key + "\" doesn't exist"
	}
	if e.Session != op.Session {
		return nil, "failed to check session, key \"" + op.Key + "\" is not held by session \"" + op.Session +
			"\", current session \"" + e.Session + "\""
	}
	return []*Entry{e.withoutValue()}, ""
}

// The session reads. Their index is the sessions table's, as in Consul.

func (r *ReadTxn) sessionsIndex(ws memdb.WatchSet) uint64 {
	return r.tableIndexWatch(ws, tableSessions)
}

// SessionGet returns a session (nil when missing) and the index.
func (r *ReadTxn) SessionGet(ws memdb.WatchSet, id string) (uint64, *Session) {
	idx := r.sessionsIndex(ws)
	if raw := r.firstRaw(tableSessions, "id", id); raw != nil {
		return idx, raw.(*Session)
	}
	return idx, nil
}

// Sessions returns every session, in ID order, and the index.
func (r *ReadTxn) Sessions(ws memdb.WatchSet) (uint64, []*Session) {
	idx := r.sessionsIndex(ws)
	var out []*Session
	it := r.iter(nil, tableSessions, "id_prefix", "")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Session))
	}
	return idx, out
}

// NodeSessions returns the sessions of a node and the index.
func (r *ReadTxn) NodeSessions(ws memdb.WatchSet, node string) (uint64, []*Session) {
	idx := r.sessionsIndex(ws)
	var out []*Session
	it := r.iter(nil, tableSessions, "node", node)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Session))
	}
	return idx, out
}
