package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/checksum"
)

const (
	// InlineMax is the largest stored value written inline in the data key.
	// Bigger values go to chunks: the flip must be one transaction, and a
	// Consul transaction body is capped at 512 KiB with values in base64.
	InlineMax = 256 << 10
	// ChunkSize is the stored bytes per chunk.
	ChunkSize = 256 << 10
	// DefaultMaxSize is the default cap on a file kvx in accepts.
	DefaultMaxSize = 64 << 20
)

// PushOptions describe one kvx in.
type PushOptions struct {
	Key      string
	Content  []byte
	MinLines int   // refuse content with fewer lines
	MaxSize  int64 // refuse content larger than this; 0 means DefaultMaxSize
	Codec    Codec
	// Recode stores content KV already holds again when it is stored with
	// another codec than Codec (kvx in with an explicit -z); without it the
	// stored codec is kept (PushResult.PreviousCodec says which).
	Recode  bool
	Diff    bool // compute the diff against the previous version for an event
	DiffMax int  // cap on the diff text; 0 means DefaultDiffMax
}

// PushResult says what a push did.
type PushResult struct {
	Key      string
	Checksum string
	Previous string // the checksum KV held before; "" when there was none
	Uploaded bool   // false: KV already held this checksum, nothing written
	Bytes    int    // content bytes
	Stored   int    // bytes stored (after compression)
	Lines    int
	Chunks   int // 0 when written inline
	// Reencoded: KV held the same content stored with another codec
	// (PreviousCodec); it was stored again with the one asked for.
	Reencoded     bool
	PreviousCodec Codec
	Diff          string // with PushOptions.Diff: event text, capped
	Took          time.Duration
}

// Push puts content under key, or refuses: too few lines, too large, or the
// stop switch on (a Refusal, nothing written). When KV already holds the
// content's checksum nothing is written. Data and checksum change in one
// transaction, guarded by the checksum's index, so a concurrent push fails
// with ErrConflict instead of interleaving.
func (c *Client) Push(ctx context.Context, o PushOptions) (res PushResult, err error) {
	start := time.Now()
	defer func() {
		res.Took = time.Since(start)
		c.report("in", o.Key, res.Bytes, res.Lines, res.Took, res.result(err))
	}()
	l, err := c.layout(o.Key)
	if err != nil {
		return res, err
	}
	res.Key = l.Key
	res.Bytes, res.Lines = len(o.Content), checksum.Lines(o.Content)
	res.Checksum = checksum.Of(o.Content)
	maxSize := o.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if int64(len(o.Content)) > maxSize {
		return res, refuse(RefusedTooLarge, "%s: %s, more than the cap of %s", l.Key, Size(int64(len(o.Content))), Size(maxSize))
	}
	if res.Lines < o.MinLines {
		return res, refuse(RefusedTooShort, "%s: %d lines, fewer than the minimum of %d", l.Key, res.Lines, o.MinLines)
	}
	s, err := c.read(ctx, l, "", "", false)
	if err != nil {
		return res, err
	}
	if s.stop != nil {
		return res, refuse(RefusedStop, "%s is set (%s): not uploading", l.Stop(), reason(s.stop))
	}
	res.Previous = s.sum()
	if res.Previous == res.Checksum {
		// Same content: nothing to write, unless it is stored with another
		// codec than Recode asks for.
		if res.PreviousCodec = s.codec(); !o.Recode || res.PreviousCodec == o.Codec {
			return res, nil
		}
		res.Reencoded = true
	}
	if o.Diff && !res.Reencoded {
		res.Diff = c.diffText(ctx, s, o)
	}
	// What kvx status reads to say how long a node has been behind,
	// written with the flip.
	rec, err := c.nextRecord(ctx, l, res.Checksum, res.Previous)
	if err != nil {
		return res, err
	}
	stored, flags, err := encode(o.Codec, o.Content, l.Kvexpress())
	if err != nil {
		return res, fmt.Errorf("encode %s: %w", l.Key, err)
	}
	res.Stored = len(stored)
	value := stored
	var chunks, wrote []string
	if len(stored) > InlineMax {
		if l.Kvexpress() {
			return res, refuse(RefusedTooLarge, "%s: %s stored, more than the kvexpress layout holds in one transaction (%s); compress (-z brotli) or use the kvx prefix, which chunks", l.Key, Size(int64(len(stored))), Size(InlineMax))
		}
		if chunks, wrote, err = c.writeChunks(ctx, l, stored); err != nil {
			return res, err
		}
		res.Chunks = len(chunks)
		value, _ = jsonMarshal(manifest{Version: 1, Size: len(stored), Chunks: chunks})
		flags |= FlagManifest
	}
	// The flip: checksum compare-and-set against what we read, data with it.
	var csIndex uint64
	if s.checksum != nil {
		csIndex = s.checksum.ModifyIndex
	}
	ops := consulapi.KVTxnOps{
		// The checksum key carries the data's flags too, so a reader that
		// fetches the data raw (no flags in a ?raw answer) knows the codec.
		{Verb: consulapi.KVCAS, Key: l.Checksum(), Value: []byte(res.Checksum), Flags: flags, Index: csIndex},
		{Verb: consulapi.KVSet, Key: l.Data(), Value: value, Flags: flags},
		{Verb: consulapi.KVCheckNotExists, Key: l.Stop()}, // a stop set since the read wins
		{Verb: consulapi.KVSet, Key: l.Updated(), Value: rec},
	}
	ok, resp, _, err := c.KV.Txn(ops, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return res, fmt.Errorf("write %s: %w", l.Key, err)
	}
	if !ok {
		now, rerr := c.read(ctx, l, "", "", false)
		if rerr == nil {
			c.dropChunks(ctx, l, now, wrote) // ours, unless the winner shares them
		}
		if rerr == nil && now.stop != nil {
			return res, refuse(RefusedStop, "%s was set (%s) while this push ran: not uploaded", l.Stop(), reason(now.stop))
		}
		if rerr == nil && now.sum() == res.Checksum {
			return res, nil // another writer pushed the same content
		}
		if rerr == nil {
			return res, fmt.Errorf("%s: %w while this push ran (checksum now %s); not overwritten: %s", l.Key, ErrConflict, abbreviate(now.sum()), txnErrors(resp))
		}
		return res, fmt.Errorf("%s: %w: %s", l.Key, ErrConflict, txnErrors(resp))
	}
	res.Uploaded = true
	if len(chunks) > 0 || len(s.chunks()) > 0 {
		c.collectChunks(ctx, l, append(chunks, s.chunks()...))
	}
	return res, nil
}

func (r PushResult) result(err error) string {
	switch {
	case errors.Is(err, ErrRefused):
		return ResultRefused
	case err != nil:
		return ResultError
	case r.Uploaded:
		return ResultUploaded
	}
	return ResultUnchanged
}

// writeChunks stores stored in content-addressed chunks, skipping those
// already present, and returns their names in order and the names it wrote.
func (c *Client) writeChunks(ctx context.Context, l Layout, stored []byte) (names, wrote []string, err error) {
	have, _, err := c.KV.Keys(l.Chunks(), "", (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", l.Chunks(), err)
	}
	todo := map[string][]byte{}
	for off := 0; off < len(stored); off += ChunkSize {
		part := stored[off:min(off+ChunkSize, len(stored))]
		name := checksum.Of(part)
		names = append(names, name)
		if !slices.Contains(have, l.Chunk(name)) {
			todo[name] = part
		}
	}
	// Four writes at a time; the first failure stops the rest and is the
	// one error reported (a server that went away fails every chunk alike).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, 4)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		first  error
		failed int
	)
	for name, part := range todo {
		if ctx.Err() != nil {
			break
		}
		wrote = append(wrote, name)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := c.KV.Put(&consulapi.KVPair{Key: l.Chunk(name), Value: part}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("write chunk %s: %w", l.Chunk(name), err)
					cancel()
				}
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return names, wrote, fmt.Errorf("%s: %d of %d chunks not written, nothing flipped: %w", l.Key, len(todo)-len(wrote)+failed, len(todo), first)
	}
	return names, wrote, nil
}

// collectChunks removes the chunks not named in keep: after a flip, the
// new version's and the one's before it, which lets a reader that started
// before the flip finish. It runs after pushes that involve chunks (so
// chunks left by a push that died before its flip go with the next chunked
// push). Errors are only logged: a leftover chunk costs space, never
// correctness.
func (c *Client) collectChunks(ctx context.Context, l Layout, names []string) {
	keep := map[string]bool{}
	for _, name := range names {
		keep[l.Chunk(name)] = true
	}
	have, _, err := c.KV.Keys(l.Chunks(), "", (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		c.log().Warn("list chunks for cleanup", "key", l.Key, "err", err)
		return
	}
	for _, k := range have {
		if keep[k] {
			continue
		}
		if _, err := c.KV.Delete(k, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
			c.log().Warn("remove unused chunk", "chunk", k, "err", err)
		}
	}
}

// dropChunks removes the chunks a losing push wrote, except those the
// current version names.
func (c *Client) dropChunks(ctx context.Context, l Layout, cur *snapshot, names []string) {
	for _, n := range names {
		if slices.Contains(cur.chunks(), n) {
			continue
		}
		if _, err := c.KV.Delete(l.Chunk(n), (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
			c.log().Warn("remove unused chunk", "chunk", l.Chunk(n), "err", err)
		}
	}
}

func reason(p *consulapi.KVPair) string {
	if len(p.Value) == 0 {
		return "no reason given"
	}
	return abbreviate(string(p.Value))
}
