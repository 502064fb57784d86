package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// Acknowledgements taken from X-Kvx-Ack headers (kv_follow.go) wait here a
// moment so that a fleet's acknowledgements of one push, which arrive
// within a few hundred milliseconds, become a few Raft entries instead of
// one per node. The leader writes them; a follower hands its batch to the
// leader over the cluster port. A key's newer value replaces a queued one.
// A value the store already holds is not written again. A batch that could
// not be written (no leader) is queued again and retried; a node also sends
// its acknowledgement again until it reads it back, so a server that dies
// with a batch in memory loses nothing for good.
const (
	ackBatchWindow = 100 * time.Millisecond
	ackRetry       = time.Second
	ackMaxPending  = 1 << 16
	ackMaxBatch    = 1024 // sets per Raft entry
)

type ackBatcher struct {
	mu      sync.Mutex
	pending map[string][]byte
	order   []string // keys in arrival order, each once
	kick    chan struct{}
}

func newAckBatcher() *ackBatcher {
	return &ackBatcher{pending: map[string][]byte{}, kick: make(chan struct{}, 1)}
}

var errAcksBusy = errors.New("too many acknowledgements waiting to be written: write it with a PUT")

func (b *ackBatcher) add(key string, value []byte) error {
	b.mu.Lock()
	if _, ok := b.pending[key]; !ok {
		if len(b.pending) >= ackMaxPending {
			b.mu.Unlock()
			return errAcksBusy
		}
		b.order = append(b.order, key)
	}
	b.pending[key] = value
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return nil
}

// take empties the queue, in arrival order.
func (b *ackBatcher) take() []ackSet {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ackSet, 0, len(b.order))
	for _, k := range b.order {
		out = append(out, ackSet{Key: k, Value: b.pending[k]})
	}
	clear(b.pending)
	b.order = b.order[:0]
	return out
}

// requeue puts back what could not be written, unless a newer value came.
func (b *ackBatcher) requeue(sets []ackSet) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range sets {
		if _, ok := b.pending[a.Key]; !ok && len(b.pending) < ackMaxPending {
			b.pending[a.Key] = a.Value
			b.order = append(b.order, a.Key)
		}
	}
}

// ackSet is one queued write, as a follower sends it to the leader.
type ackSet struct {
	Key   string
	Value []byte
}

// writeAcks runs until shutdown: after the first acknowledgement of a
// quiet spell it waits ackBatchWindow for the others, then writes them all.
func (s *Server) writeAcks() {
	for {
		select {
		case <-s.shutdown:
			s.lastAcks()
			return
		case <-s.acks.kick:
		}
		t := time.NewTimer(ackBatchWindow)
		select {
		case <-s.shutdown:
			t.Stop()
			s.lastAcks()
			return
		case <-t.C:
		}
		sets := s.acks.take()
		if len(sets) == 0 {
			continue
		}
		if err := s.flushAcks(sets); err != nil {
			s.logger.Warn("writing acknowledgements; retrying", "count", len(sets), "err", err)
			s.acks.requeue(sets)
			t := time.NewTimer(ackRetry)
			select {
			case <-s.shutdown:
				t.Stop()
				return
			case <-t.C:
			}
			select {
			case s.acks.kick <- struct{}{}:
			default:
			}
		}
	}
}

// lastAcks writes, when stopping, what a leader still holds (Raft is
// still up: Close stops it after the HTTP servers). A follower's are left
// to its nodes, which send them again to the server they reach next.
func (s *Server) lastAcks() {
	if sets := s.acks.take(); len(sets) > 0 && s.IsLeader() {
		if err := s.applyAcks(sets); err != nil {
			s.logger.Warn("acknowledgements not written at shutdown", "count", len(sets), "err", err)
		}
	}
}

// flushAcks writes sets through the leader.
func (s *Server) flushAcks(sets []ackSet) error {
	if s.IsLeader() {
		return s.applyAcks(sets)
	}
	addr, _ := s.raft.LeaderWithID()
	if addr == "" {
		return errNoLeader
	}
	var ok bool
	return s.internalCall(string(addr), "/internal/v1/acks", sets, &ok)
}

// applyAcks writes, as the leader, the sets whose value is not already
// stored, ackMaxBatch to a Raft entry.
func (s *Server) applyAcks(sets []ackSet) error {
	rt := s.store.Read()
	ops := make([]state.Op, 0, len(sets))
	for _, a := range sets {
		if _, e := rt.KVGet(nil, a.Key); e != nil && e.Session == "" && e.Flags == 0 && bytes.Equal(e.Value, a.Value) {
			continue
		}
		ops = append(ops, state.Op{Verb: state.VerbSet, Key: a.Key, Value: a.Value})
	}
	for len(ops) > 0 {
		n := min(len(ops), ackMaxBatch)
		res, err := s.apply(encodeTxn(ops[:n]))
		if err != nil {
			return err
		}
		if tr, ok := res.(state.TxnResult); ok && len(tr.Errors) > 0 {
			// A set fails only on a key the store refuses: drop the batch's
			// bad ones, write the rest.
			s.logger.Warn("acknowledgements refused", "errors", len(tr.Errors), "first", tr.Errors[0].What)
			bad := map[int]bool{}
			for _, e := range tr.Errors {
				bad[e.OpIndex] = true
			}
			kept := ops[:0:0]
			for i, op := range ops[:n] {
				if !bad[i] {
					kept = append(kept, op)
				}
			}
			ops = append(kept, ops[n:]...)
			continue
		}
		ops = ops[n:]
	}
	return nil
}

// handleInternalAcks takes a follower's batch (cluster port only).
func (s *Server) handleInternalAcks(w http.ResponseWriter, r *http.Request) {
	var sets []ackSet
	if err := json.NewDecoder(r.Body).Decode(&sets); err != nil {
		http.Error(w, "bad acknowledgements: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !s.IsLeader() {
		s.writeError(w, raft.ErrNotLeader)
		return
	}
	if err := s.applyAcks(sets); err != nil {
		s.writeError(w, err)
		return
	}
	writeRawJSON(w, http.StatusOK, []byte("true"))
}
