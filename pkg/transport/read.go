package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/checksum"
)

// snapshot is one consistent read of a key's state: everything comes from
// one read-only transaction, so data and checksum always belong together.
type snapshot struct {
	layout   Layout
	data     *consulapi.KVPair // nil: missing
	checksum *consulapi.KVPair
	stop     *consulapi.KVPair
	lock     *consulapi.KVPair // this node's freeze of the target file
	ack      *consulapi.KVPair // this node's acknowledgement
}

// sum is the checksum the snapshot holds, "" when there is none.
func (s *snapshot) sum() string {
	if s.checksum == nil {
		return ""
	}
	return strings.TrimSpace(string(s.checksum.Value))
}

// chunks names the chunks the snapshot's manifest refers to (none when the
// data is inline, missing or s is nil).
func (s *snapshot) chunks() []string {
	if s == nil || s.data == nil || s.data.Flags&FlagManifest == 0 {
		return nil
	}
	m, err := parseManifest(s.data.Value)
	if err != nil {
		return nil
	}
	return m.Chunks
}

// read takes a snapshot of l. lockKey and ackKey may be empty.
func (c *Client) read(ctx context.Context, l Layout, lockKey, ackKey string) (*snapshot, error) {
	keys := []string{l.Data(), l.Checksum(), l.Stop()}
	if lockKey != "" {
		keys = append(keys, lockKey)
	}
	if ackKey != "" {
		keys = append(keys, ackKey)
	}
	ops := make(consulapi.KVTxnOps, len(keys))
	for i, k := range keys {
		ops[i] = &consulapi.KVTxnOp{Verb: consulapi.KVGetOrEmpty, Key: k}
	}
	ok, resp, _, err := c.KV.Txn(ops, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", l.base(), err)
	}
	if !ok || resp == nil || len(resp.Results) != len(keys) {
		return nil, fmt.Errorf("read %s: transaction failed: %v", l.base(), txnErrors(resp))
	}
	got := map[string]*consulapi.KVPair{}
	for _, p := range resp.Results {
		if p != nil && p.ModifyIndex != 0 { // get-or-empty answers a missing key with index 0
			got[p.Key] = p
		}
	}
	s := &snapshot{layout: l, data: got[l.Data()], checksum: got[l.Checksum()], stop: got[l.Stop()]}
	if lockKey != "" {
		s.lock = got[lockKey]
	}
	if ackKey != "" {
		s.ack = got[ackKey]
	}
	return s, nil
}

func txnErrors(resp *consulapi.KVTxnResponse) string {
	if resp == nil || len(resp.Errors) == 0 {
		return "no reason given"
	}
	var parts []string
	for _, e := range resp.Errors {
		parts = append(parts, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
	}
	return strings.Join(parts, "; ")
}

// errChunkGone means a chunk named by the manifest has been removed: a newer
// version was pushed while this read ran. The reader starts over.
var errChunkGone = errors.New("chunk removed by a newer version")

// content returns the verified content of a snapshot: chunks fetched and
// checked, decoded, and hashed against the checksum. A mismatch is a
// Refusal.
func (c *Client) content(ctx context.Context, s *snapshot) ([]byte, error) {
	sum := s.sum()
	switch {
	case s.checksum == nil:
		return nil, refuse(RefusedMissing, "%s is missing", s.layout.Checksum())
	case s.data == nil:
		return nil, refuse(RefusedMissing, "%s is missing", s.layout.Data())
	case !checksum.Valid(sum):
		return nil, refuse(RefusedMismatch, "%s holds %q, not a SHA-256 hex digest", s.layout.Checksum(), abbreviate(sum))
	}
	stored := s.data.Value
	if s.data.Flags&FlagManifest != 0 {
		m, err := parseManifest(stored)
		if err != nil {
			return nil, refuse(RefusedMismatch, "%s: %v", s.layout.Data(), err)
		}
		if stored, err = c.fetchChunks(ctx, s.layout, m); err != nil {
			return nil, err
		}
	}
	out, err := decode(s.data.Flags, stored, sum)
	if err != nil { // a mismatch, or bytes that do not decode: either way not this checksum's content
		return nil, refuse(RefusedMismatch, "%s: %v", s.layout.Data(), err)
	}
	return out, nil
}

// fetchChunks reads a manifest's chunks, a few at a time, each checked
// against its name.
func (c *Client) fetchChunks(ctx context.Context, l Layout, m manifest) ([]byte, error) {
	parts := make([][]byte, len(m.Chunks))
	errs := make([]error, len(m.Chunks))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, name := range m.Chunks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			p, _, err := c.KV.Get(l.Chunk(name), (&consulapi.QueryOptions{}).WithContext(ctx))
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("read chunk %s: %w", l.Chunk(name), err)
			case p == nil:
				errs[i] = fmt.Errorf("%s: %w", l.Chunk(name), errChunkGone)
			case checksum.Of(p.Value) != name:
				errs[i] = refuse(RefusedMismatch, "chunk %s does not hash to its name", l.Chunk(name))
			default:
				parts[i] = p.Value
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]byte, 0, m.Size)
	for _, p := range parts {
		out = append(out, p...)
	}
	if len(out) != m.Size {
		return nil, refuse(RefusedMismatch, "%s: chunks hold %d bytes, manifest says %d", l.Data(), len(out), m.Size)
	}
	return out, nil
}

// Ack is one node's acknowledgement, stored as JSON under nodes/<node>.
type Ack struct {
	Node     string `json:"node"`
	Checksum string `json:"checksum,omitempty"` // what the node's file holds now
	Result   string `json:"result"`
	Code     string `json:"code,omitempty"` // the refusal code
	Error    string `json:"error,omitempty"`
	File     string `json:"file,omitempty"`
	Time     string `json:"time"` // RFC 3339, UTC: when this result was first recorded
}

func parseAck(p *consulapi.KVPair) (Ack, bool) {
	var a Ack
	if p == nil || json.Unmarshal(p.Value, &a) != nil {
		return Ack{}, false
	}
	return a, true
}

func abbreviate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
