package server

import (
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// kvResponse is the FSM's answer to a single KV operation.
type kvResponse struct {
	ok  bool
	err error
}

// fsm applies committed Raft entries to the state store.
type fsm struct {
	store   *state.Store
	logger  *slog.Logger
	applied *applyClock // nil in tests that build an fsm alone
}

var _ raft.BatchingFSM = (*fsm)(nil)

func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies a batch of committed entries. Consecutive single KV
// operations share one memdb transaction, so a burst of writes costs one
// commit and one round of watch notifications; a txn gets a transaction of
// its own so that its rollback drops nothing else.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	if f.applied != nil {
		now := time.Now()
		for _, l := range logs {
			f.applied.record(l.Index, now)
		}
	}
	var shared *state.WriteTxn
	flush := func() {
		if shared != nil {
			shared.Commit()
			shared = nil
		}
	}
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := decodeCommand(l.Data)
		if err != nil {
			// Decoding is deterministic, so every node refuses the entry alike.
			f.logger.Error("undecodable raft entry", "index", l.Index, "err", err)
			out[i] = err
			continue
		}
		switch c.typ {
		case cmdKV, cmdReap:
			if shared == nil {
				shared = f.store.Write()
			}
			shared.At(l.Index)
			if c.typ == cmdReap {
				out[i] = shared.ReapTombstones(c.index)
				continue
			}
			ok, err := shared.Apply(&c.ops[0])
			out[i] = kvResponse{ok: ok, err: err}
		case cmdRegister, cmdDeregister:
			flush()
			out[i] = f.applyCatalog(&c, l.Index)
		case cmdSession:
			flush()
			out[i] = f.applySession(c.sess, l.Index)
		case cmdEvent:
			flush()
			out[i] = f.applyEvent(c.event, l.Index)
		case cmdACL:
			flush()
			out[i] = f.applyACL(c.acl, l.Index)
		case cmdTxn:
			flush()
			w := f.store.Write()
			w.At(l.Index)
			res := w.Txn(c.ops)
			if len(res.Errors) > 0 {
				w.Abort()
			} else {
				w.Commit()
			}
			out[i] = res
		}
	}
	flush()
	return out
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.store.Snapshot()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.store.Restore(rc)
}

type fsmSnapshot struct{ snap *state.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.snap.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
