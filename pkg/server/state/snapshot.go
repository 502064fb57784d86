package state

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	memdb "github.com/hashicorp/go-memdb"
)

// Snapshot is a point-in-time copy of the store that can be persisted while
// writes go on.
type Snapshot struct {
	txn *memdb.Txn
}

// Snapshot takes a point-in-time copy, in O(1): memdb trees are immutable.
func (s *Store) Snapshot() *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &Snapshot{txn: s.db.Snapshot().Txn(false)}
}

// Snapshot format: a magic header, then records of
// kind byte | fields as uvarint lengths/values, ending with kind 0.
const snapMagic = "kvx-state-v1\n"

const (
	recEnd       = 0
	recEntry     = 1
	recTombstone = 2
	recIndex     = 3
	recNode      = 4 // the catalog's records are JSON: they are few, and change shape
	recService   = 5
	recCheck     = 6
	recSession   = 7
	recEvent     = 8
	recACLToken  = 9
	recACLPolicy = 10
)

// catalogRecords maps the catalog's snapshot records to their tables.
var catalogRecords = []struct {
	kind  byte
	table string
	new   func() any
}{
	{recNode, tableNodes, func() any { return new(Node) }},
	{recService, tableServices, func() any { return new(Service) }},
	{recCheck, tableChecks, func() any { return new(Check) }},
	{recSession, tableSessions, func() any { return new(Session) }},
	{recEvent, tableEvents, func() any { return new(Event) }},
	{recACLToken, tableACLTokens, func() any { return new(ACLToken) }},
	{recACLPolicy, tableACLPolicies, func() any { return new(ACLPolicy) }},
}

type snapWriter struct {
	w   *bufio.Writer
	buf []byte
}

func (s *snapWriter) uvarint(v uint64) { s.buf = binary.AppendUvarint(s.buf, v) }
func (s *snapWriter) bytes(b []byte)   { s.uvarint(uint64(len(b))); s.buf = append(s.buf, b...) }
func (s *snapWriter) flush() error {
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}

// WriteTo persists the snapshot.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	sw := &snapWriter{w: bufio.NewWriterSize(w, 64<<10)}
	sw.buf = append(sw.buf, snapMagic...)
	each := func(table string, fn func(raw any)) error {
		var it memdb.ResultIterator
		var err error
		if table == tableEvents { // keyed by a number: no prefix index
			it, err = sn.txn.LowerBound(table, "id", uint64(0))
		} else {
			it, err = sn.txn.Get(table, "id_prefix", "")
		}
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", table, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			fn(raw)
			if len(sw.buf) > 32<<10 {
				if err := sw.flush(); err != nil {
					return fmt.Errorf("write snapshot: %w", err)
				}
			}
		}
		return nil
	}
	if err := each(tableKVs, func(raw any) {
		e := raw.(*Entry)
		sw.buf = append(sw.buf, recEntry)
		sw.bytes([]byte(e.Key))
		sw.uvarint(e.CreateIndex)
		sw.uvarint(e.ModifyIndex)
		sw.uvarint(e.LockIndex)
		sw.uvarint(e.Flags)
		sw.bytes(e.Value)
		sw.bytes([]byte(e.Session))
	}); err != nil {
		return 0, err
	}
	if err := each(tableTombstones, func(raw any) {
		t := raw.(*Tombstone)
		sw.buf = append(sw.buf, recTombstone)
		sw.bytes([]byte(t.Key))
		sw.uvarint(t.Index)
	}); err != nil {
		return 0, err
	}
	if err := each(tableIndexes, func(raw any) {
		t := raw.(*tableIndex)
		sw.buf = append(sw.buf, recIndex)
		sw.bytes([]byte(t.Name))
		sw.uvarint(t.Value)
	}); err != nil {
		return 0, err
	}
	for _, rec := range catalogRecords {
		var jerr error
		if err := each(rec.table, func(raw any) {
			b, err := json.Marshal(raw)
			if err != nil && jerr == nil {
				jerr = fmt.Errorf("snapshot %s: %w", rec.table, err)
			}
			sw.buf = append(sw.buf, rec.kind)
			sw.bytes(b)
		}); err != nil {
			return 0, err
		}
		if jerr != nil {
			return 0, jerr
		}
	}
	sw.buf = append(sw.buf, recEnd)
	if err := sw.flush(); err != nil {
		return 0, fmt.Errorf("write snapshot: %w", err)
	}
	return 0, sw.w.Flush()
}

// ErrBadSnapshot is returned for a snapshot that cannot be decoded.
var ErrBadSnapshot = errors.New("bad state snapshot")

type snapReader struct {
	r   *bufio.Reader
	err error
}

func (s *snapReader) uvarint() uint64 {
	if s.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(s.r)
	s.err = err
	return v
}

func (s *snapReader) bytes() []byte {
	n := s.uvarint()
	if s.err != nil {
		return nil
	}
	if n > 1<<30 {
		s.err = fmt.Errorf("field of %d bytes", n)
		return nil
	}
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	_, s.err = io.ReadFull(s.r, b)
	return b
}

// Restore replaces the whole state with a persisted snapshot. Blocking queries
// on the old state are woken through their abandon channel.
func (s *Store) Restore(r io.Reader) error {
	sr := &snapReader{r: bufio.NewReaderSize(r, 64<<10)}
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(sr.r, magic); err != nil || string(magic) != snapMagic {
		return fmt.Errorf("%w: missing header", ErrBadSnapshot)
	}
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	txn := db.Txn(true)
	defer txn.Abort()
	for {
		kind, err := sr.r.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadSnapshot, err)
		}
		var obj any
		var table string
		switch kind {
		case recEnd:
			if sr.err != nil {
				return fmt.Errorf("%w: %v", ErrBadSnapshot, sr.err)
			}
			txn.Commit()
			s.mu.Lock()
			s.db = db
			close(s.abandon)
			s.abandon = make(chan struct{})
			s.mu.Unlock()
			return nil
		case recEntry:
			e := &Entry{Key: string(sr.bytes())}
			e.CreateIndex, e.ModifyIndex, e.LockIndex, e.Flags = sr.uvarint(), sr.uvarint(), sr.uvarint(), sr.uvarint()
			e.Value = sr.bytes()
			e.Session = string(sr.bytes())
			obj, table = e, tableKVs
		case recTombstone:
			obj, table = &Tombstone{Key: string(sr.bytes()), Index: sr.uvarint()}, tableTombstones
		case recIndex:
			obj, table = &tableIndex{Name: string(sr.bytes()), Value: sr.uvarint()}, tableIndexes
		case recNode, recService, recCheck, recSession, recEvent, recACLToken, recACLPolicy:
			rec := catalogRecords[kind-recNode]
			obj, table = rec.new(), rec.table
			if b := sr.bytes(); sr.err == nil {
				if err := json.Unmarshal(b, obj); err != nil {
					return fmt.Errorf("%w: %s: %v", ErrBadSnapshot, table, err)
				}
			}
		default:
			return fmt.Errorf("%w: record kind %d", ErrBadSnapshot, kind)
		}
		if sr.err != nil {
			return fmt.Errorf("%w: %v", ErrBadSnapshot, sr.err)
		}
		if err := txn.Insert(table, obj); err != nil {
			return fmt.Errorf("restore %s: %w", table, err)
		}
	}
}
