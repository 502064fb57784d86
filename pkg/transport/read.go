package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/checksum"
)

// snapshot is one consistent read of a key's state: everything comes from
// one read-only transaction, so data and checksum always belong together.
type snapshot struct {
	layout Layout
	lazy   bool // data was left out of the read: fetch it raw
	// pre is the data key's raw value as the watch's blocking query
	// answered it, used instead of fetching it again. Checked like a
	// fetch: if it is not the checksum's content, the read starts over.
	pre []byte

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

// codec is how the snapshot's data is stored; "missing" when there is no
// data, which no codec asked for equals.
func (s *snapshot) codec() Codec {
	if s.data == nil {
		return "missing"
	}
	return codecOf(s.data, s.sum())
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

// rawGetter reads a value as raw bytes, and blocks on it; pkg/client's KV
// has it. Without it, data comes inside the read transaction as JSON and
// base64, and a watch blocks on the checksum key.
type rawGetter interface {
	GetRaw(ctx context.Context, key string) ([]byte, bool, error)
	GetRawAt(ctx context.Context, key string, index uint64, wait time.Duration) ([]byte, bool, uint64, error)
}

// read takes a snapshot of l. lockKey and ackKey may be empty. With lazy,
// the data is left out and content fetches it raw when it is needed; the
// checksum key carries the data's flags for that.
func (c *Client) read(ctx context.Context, l Layout, lockKey, ackKey string, lazy bool) (*snapshot, error) {
	keys := []string{l.Checksum(), l.Stop()}
	if !lazy {
		keys = append(keys, l.Data())
	}
	if lockKey != "" {
		keys = append(keys, lockKey)
	}
	if ackKey != "" {
		keys = append(keys, ackKey)
	}
	got := map[string]*consulapi.KVPair{}
	if kg, ok := c.KV.(keysGetter); ok {
		pairs, err := kg.GetKeys(ctx, keys)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", l.base(), err)
		}
		for i, p := range pairs {
			if p != nil {
				got[keys[i]] = p
			}
		}
	} else {
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
		for _, p := range resp.Results {
			if p != nil && p.ModifyIndex != 0 { // get-or-empty answers a missing key with index 0
				got[p.Key] = p
			}
		}
	}
	s := &snapshot{layout: l, lazy: lazy, data: got[l.Data()], checksum: got[l.Checksum()], stop: got[l.Stop()]}
	if lockKey != "" {
		s.lock = got[lockKey]
	}
	if ackKey != "" {
		s.ack = got[ackKey]
	}
	return s, nil
}

// snapshotOf is the lazy snapshot a kvx server's X-Kvx-Read answer holds,
// nil if reads lacks one of the keys.
func snapshotOf(l Layout, lockKey, ackKey string, reads map[string]*consulapi.KVPair) *snapshot {
	if reads == nil {
		return nil
	}
	for _, k := range []string{l.Checksum(), l.Stop(), lockKey, ackKey} {
		if _, ok := reads[k]; !ok && k != "" {
			return nil
		}
	}
	s := &snapshot{layout: l, lazy: true, checksum: reads[l.Checksum()], stop: reads[l.Stop()]}
	if lockKey != "" {
		s.lock = reads[lockKey]
	}
	if ackKey != "" {
		s.ack = reads[ackKey]
	}
	return s
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

// keysGetter reads keys in one read-only transaction, more cheaply than
// KV.Txn; pkg/client's KV has it. Missing keys come back nil.
type keysGetter interface {
	GetKeys(ctx context.Context, keys []string) ([]*consulapi.KVPair, error)
}

// lazyRead reports whether reads of l may fetch data raw: the KV has
// GetRaw, and the layout is kvx's (kvexpress does not mirror the data's
// flags on the checksum key).
func (c *Client) lazyRead(l Layout) bool {
	_, ok := c.KV.(rawGetter)
	return ok && !l.Kvexpress()
}

// errRetry means a newer version landed while a read ran (a chunk was
// removed, or data fetched after the checksum no longer matches it). The
// reader starts over; the last attempt reads everything in one transaction.
var errRetry = errors.New("a newer version landed during the read")

const readAttempts = 3

// readContent reads key's state and its verified content, starting over
// when a newer version lands mid-read. What a watch's answer already holds
// (h: the data key's raw value, the keys a kvx server read with it) is
// used by the first attempt only, instead of reading again.
func (c *Client) readContent(ctx context.Context, l Layout, lockKey, ackKey string, h inHand, use func(*snapshot) error) (*snapshot, error) {
	for attempt := 1; ; attempt++ {
		lazy := c.lazyRead(l) && attempt < readAttempts
		var (
			s   *snapshot
			err error
		)
		if s = snapshotOf(l, lockKey, ackKey, h.reads); s == nil || !lazy || attempt > 1 {
			s, err = c.read(ctx, l, lockKey, ackKey, lazy)
		}
		if err == nil {
			if lazy && attempt == 1 {
				s.pre = h.pre
			}
			err = use(s)
		}
		if !errors.Is(err, errRetry) || attempt == readAttempts {
			return s, err
		}
	}
}

// content returns the verified content of a snapshot: chunks fetched and
// checked, decoded, and hashed against the checksum. A mismatch is a
// Refusal.
func (c *Client) content(ctx context.Context, s *snapshot) ([]byte, error) {
	sum := s.sum()
	switch {
	case s.checksum == nil:
		return nil, refuse(RefusedMissing, "%s is missing", s.layout.Checksum())
	case s.lazy && s.data == nil && s.pre != nil:
		s.data = &consulapi.KVPair{Key: s.layout.Data(), Value: s.pre, Flags: s.checksum.Flags}
	case s.lazy && s.data == nil:
		v, found, err := c.KV.(rawGetter).GetRaw(ctx, s.layout.Data())
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.layout.Data(), err)
		}
		if found {
			s.data = &consulapi.KVPair{Key: s.layout.Data(), Value: v, Flags: s.checksum.Flags}
		}
	}
	switch {
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
	if err != nil && s.lazy {
		return nil, fmt.Errorf("%s: %w", s.layout.Data(), errRetry) // data read after the checksum: newer, or flags not mirrored
	}
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
			v, found, err := c.get(ctx, l.Chunk(name))
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("read chunk %s: %w", l.Chunk(name), err)
			case !found:
				errs[i] = fmt.Errorf("%s is gone: %w", l.Chunk(name), errRetry)
			case checksum.Of(v) != name:
				errs[i] = refuse(RefusedMismatch, "chunk %s does not hash to its name", l.Chunk(name))
			default:
				parts[i] = v
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

// get reads one value, raw when the KV can.
func (c *Client) get(ctx context.Context, key string) ([]byte, bool, error) {
	if r, ok := c.KV.(rawGetter); ok {
		return r.GetRaw(ctx, key)
	}
	p, _, err := c.KV.Get(key, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil || p == nil {
		return nil, false, err
	}
	return p.Value, true, nil
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
