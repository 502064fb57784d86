package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// User events. Consul spreads them by gossip and each agent keeps the last
// 256 it received; kvx has no gossip, so a fired event is a Raft entry and
// the state keeps the last MaxEvents of them, in the order they were fired.
// Each server (and agent) lists the ones whose filters match its node.

// MaxEvents is how many events are kept, as Consul's agents keep.
const MaxEvents = 256

// Event is one user event.
type Event struct {
	ID            string
	Name          string
	Payload       []byte
	NodeFilter    string
	ServiceFilter string
	TagFilter     string
	Version       int
	// LTime is the event's Lamport time: one more than the previous
	// event's. Serf's clocks start at 1 and move before each event, so the
	// first event is at 2, as a fresh Consul cluster answers.
	LTime uint64
}

const tableEvents = "events"

func eventTables() map[string]*memdb.TableSchema {
	return map[string]*memdb.TableSchema{
		tableEvents: {Name: tableEvents, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: &memdb.UintFieldIndex{Field: "LTime"}},
		}},
	}
}

// FireEvent appends an event, giving it the next Lamport time, and drops
// the oldest beyond MaxEvents.
func (w *WriteTxn) FireEvent(e *Event) *Event {
	all := eventsIn(w.txn)
	c := *e
	c.LTime = 2
	if n := len(all); n > 0 {
		c.LTime = all[n-1].(*Event).LTime + 1
	}
	w.insert(tableEvents, &c)
	for i := 0; i <= len(all)-MaxEvents; i++ {
		w.remove(tableEvents, all[i])
	}
	w.setIndex(tableEvents, w.index)
	return &c
}

func eventsIn(txn *memdb.Txn) []any {
	it, err := txn.LowerBound(tableEvents, "id", uint64(0))
	if err != nil {
		panic(fmt.Sprintf("events: %v", err))
	}
	var out []any
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw)
	}
	return out
}

// Events returns the kept events, oldest first, watching for new ones.
func (r *ReadTxn) Events(ws memdb.WatchSet) []*Event {
	r.tableIndexWatch(ws, tableEvents)
	var out []*Event
	for _, raw := range eventsIn(r.txn) {
		out = append(out, raw.(*Event))
	}
	return out
}
