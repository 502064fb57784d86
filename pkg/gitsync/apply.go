package gitsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/transport"
)

// Transaction bounds: Consul takes at most 128 operations and a 512 KiB
// body per transaction; values travel in base64.
const (
	MaxTxnOps   = 128
	MaxTxnBytes = 512 << 10
	opOverhead  = 160 // the JSON around one operation, generously
)

// ErrConflict means another writer (another git2kv) changed the branch's
// ref key while this sync ran; the sync stopped and is planned again.
var ErrConflict = errors.New("the ref key changed under this sync: another git2kv is writing the branch")

// applier writes a plan.
type applier struct {
	kv     KV
	node   string
	logger *slog.Logger
}

// apply writes p in transactions of at most MaxTxnOps operations and
// MaxTxnBytes, puts before deletes, and returns how many it committed.
// Every transaction carries an operation on the ref key: the first
// compare-and-sets it (to the commit when it is the only one, else to its
// old value: a claim), the middle ones check its index, the last sets it to
// the commit. So two instances never interleave their writes to a branch:
// the one that loses a check stops with ErrConflict. Large values are
// pushed in kvx's chunked layout before the last transaction.
func (a *applier) apply(ctx context.Context, p *Plan) (int, error) {
	if p.Empty() {
		return 0, nil
	}
	var large []Put
	var ops consulapi.KVTxnOps
	for _, put := range p.Puts {
		if put.Large {
			large = append(large, put)
			continue
		}
		ops = append(ops, &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: put.Key, Value: put.Value})
	}
	for _, d := range p.Deletes {
		ops = append(ops, &consulapi.KVTxnOp{Verb: consulapi.KVDelete, Key: d})
	}
	batches := split(ops, p.RefKey)
	var index uint64
	if p.ref != nil {
		index = p.ref.ModifyIndex
	}
	head := p.Head
	if head == "" {
		head = p.RefValue() // pruning: the ref is among the deletes
	}
	for i, b := range batches {
		last := i == len(batches)-1
		if last && len(large) > 0 {
			for _, put := range large {
				if err := a.pushLarge(ctx, put); err != nil {
					return i, err
				}
			}
		}
		var refOp *consulapi.KVTxnOp
		switch {
		case p.Head == "" && last: // pruned: the ref's delete is in the batch
			refOp = &consulapi.KVTxnOp{Verb: consulapi.KVCheckIndex, Key: p.RefKey, Index: index}
		case last:
			refOp = &consulapi.KVTxnOp{Verb: consulapi.KVCAS, Key: p.RefKey, Value: []byte(head), Index: index}
		case i == 0:
			refOp = &consulapi.KVTxnOp{Verb: consulapi.KVCAS, Key: p.RefKey, Value: []byte(p.RefValue()), Index: index}
		default:
			refOp = &consulapi.KVTxnOp{Verb: consulapi.KVCheckIndex, Key: p.RefKey, Index: index}
		}
		if p.ref == nil && refOp.Verb == consulapi.KVCheckIndex {
			// No ref before this sync and none claimed (a prune of nothing).
			refOp = &consulapi.KVTxnOp{Verb: consulapi.KVCheckNotExists, Key: p.RefKey}
		}
		ok, resp, _, err := a.kv.Txn(append(consulapi.KVTxnOps{refOp}, b...), (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return i, fmt.Errorf("%s %s: transaction %d of %d: %w", p.Repo, p.Branch, i+1, len(batches), err)
		}
		if !ok {
			if refFailed(resp) {
				return i, fmt.Errorf("%s %s: transaction %d of %d: %w", p.Repo, p.Branch, i+1, len(batches), ErrConflict)
			}
			return i, fmt.Errorf("%s %s: transaction %d of %d rolled back: %s", p.Repo, p.Branch, i+1, len(batches), txnErrors(resp))
		}
		if refOp.Verb == consulapi.KVCAS {
			for _, r := range resp.Results {
				if r != nil && r.Key == p.RefKey {
					index = r.ModifyIndex
				}
			}
			if p.ref == nil {
				p.ref = &consulapi.KVPair{Key: p.RefKey, ModifyIndex: index}
			}
		}
	}
	return len(batches), nil
}

// split cuts ops into transactions, leaving room for the ref operation.
// No operations still make one transaction: the one that moves the ref.
func split(ops consulapi.KVTxnOps, refKey string) []consulapi.KVTxnOps {
	budget := MaxTxnBytes - opOverhead - 2*len(refKey) - 64 // the ref op, a SHA in base64
	var out []consulapi.KVTxnOps
	var cur consulapi.KVTxnOps
	size := 0
	for _, op := range ops {
		n := opOverhead + 2*len(op.Key) + (len(op.Value)+2)/3*4
		if len(cur) > 0 && (len(cur)+1 >= MaxTxnOps || size+n > budget) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, op)
		size += n
	}
	return append(out, cur)
}

// refFailed reports whether the failed operation was the ref's (the
// first).
func refFailed(resp *consulapi.KVTxnResponse) bool {
	if resp == nil {
		return false
	}
	for _, e := range resp.Errors {
		if e.OpIndex == 0 {
			return true
		}
	}
	return false
}

func txnErrors(resp *consulapi.KVTxnResponse) string {
	if resp == nil || len(resp.Errors) == 0 {
		return "no reason given"
	}
	var s []string
	for _, e := range resp.Errors {
		s = append(s, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
	}
	return strings.Join(s, "; ")
}

// pushLarge writes a large value with kvx in's protocol: <key>/data (or a
// chunk manifest), <key>/checksum, <key>/chunks/; kvx out -p <dir> -k
// <name> delivers it.
func (a *applier) pushLarge(ctx context.Context, put Put) error {
	c := &transport.Client{KV: a.kv, Prefix: path.Dir(put.Key), Node: a.node, Logger: a.logger}
	_, err := c.Push(ctx, transport.PushOptions{Key: path.Base(put.Key), Content: put.Value, MaxSize: 1 << 30})
	if err != nil {
		return fmt.Errorf("%s: chunked write of %s: %w", put.File, put.Key, err)
	}
	return nil
}
