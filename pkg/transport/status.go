package transport

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/checksum"
)

// ErrNoKey means a key has no checksum: nothing was ever pushed to it (a
// typo?), or it was deleted.
var ErrNoKey = errors.New("no such key")

// Status is what kvx status reports for a key.
type Status struct {
	Key      string `json:"key"`
	Checksum string `json:"checksum"`
	Stop     string `json:"stop,omitempty"` // the reason, when the stop switch is on
	// Pushed is when Checksum was pushed (RFC 3339), from <key>/updated;
	// when another tool wrote the checksum it is estimated from the first
	// acknowledgement of it (PushedEstimated), and "" when none has it.
	Pushed          string    `json:"pushed,omitempty"`
	PushedBy        string    `json:"pushed_by,omitempty"`
	PushedEstimated bool      `json:"pushed_estimated,omitempty"`
	Nodes           int       `json:"nodes"`   // nodes that acknowledged anything
	Current         int       `json:"current"` // nodes whose file has Checksum (and whose command did not fail)
	Behind          []Laggard `json:"behind"`  // the others, with why
	// Frozen are the acknowledging nodes that froze their file of this key
	// (kvx freeze), current or not.
	Frozen []Freeze `json:"frozen,omitempty"`
}

// Laggard is a node without the current version: its acknowledgement, its
// freeze, and how long it has been behind.
type Laggard struct {
	Ack
	Frozen string `json:"frozen,omitempty"` // the freeze's reason, when the node froze its file
	// BehindSince is when the node started lacking the current version
	// (RFC 3339; "" unknown): the push that replaced the version it has,
	// when that is in <key>/updated's history, else the current push (or
	// the node's first word of it, if later).
	BehindSince    string `json:"behind_since,omitempty"`
	VersionsBehind int    `json:"versions_behind,omitempty"` // pushes it missed; 0 unknown
}

// Freeze is a node's freeze of its file of a key.
type Freeze struct {
	Node   string `json:"node"`
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// Reached reports whether want nodes have the current version; want 0
// means every acknowledging node, and at least one.
func (st Status) Reached(want int) bool {
	if want <= 0 {
		return st.Nodes > 0 && st.Current == st.Nodes
	}
	return st.Checksum != "" && st.Current >= want
}

// Status reads the checksum, the stop switch, the push record, every
// acknowledgement and every freeze under the prefix in one transaction. A
// key without a checksum is an error wrapping ErrNoKey; the Status then
// still holds what was read (acknowledgements of a deleted key).
func (c *Client) Status(ctx context.Context, key string) (Status, error) {
	l, err := c.layout(key)
	if err != nil {
		return Status{}, err
	}
	locks := Locks(c.prefix())
	ops := consulapi.KVTxnOps{
		{Verb: consulapi.KVGetOrEmpty, Key: l.Checksum()},
		{Verb: consulapi.KVGetOrEmpty, Key: l.Stop()},
		{Verb: consulapi.KVGetOrEmpty, Key: l.Updated()},
		{Verb: consulapi.KVGetTree, Key: l.Nodes()},
		{Verb: consulapi.KVGetTree, Key: locks},
	}
	ok, resp, _, err := c.KV.Txn(ops, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return Status{}, fmt.Errorf("read status of %s: %w", l.Key, err)
	}
	if !ok {
		return Status{}, fmt.Errorf("read status of %s: %s", l.Key, txnErrors(resp))
	}
	st := Status{Key: l.Key, Behind: []Laggard{}}
	var (
		acks   []Ack
		rec    record
		hasRec bool
		frozen = map[string]string{} // lock key -> reason
	)
	for _, p := range resp.Results {
		switch {
		case p.Key == l.Checksum():
			st.Checksum = strings.TrimSpace(string(p.Value))
		case p.Key == l.Stop():
			if p.ModifyIndex != 0 {
				st.Stop = reason(p)
			}
		case p.Key == l.Updated():
			if p.ModifyIndex != 0 {
				rec, hasRec = parseRecord(p.Value)
			}
		case strings.HasPrefix(p.Key, l.Nodes()):
			node := strings.TrimPrefix(p.Key, l.Nodes())
			a, ok := parseAck(p)
			if !ok {
				a = Ack{Result: ResultError, Error: "unreadable acknowledgement"}
			}
			a.Node = node // the key names the node; it is what its freeze is under
			acks = append(acks, a)
		case strings.HasPrefix(p.Key, locks):
			frozen[p.Key] = reason(p)
		}
	}
	current := func(a Ack) bool {
		return st.Checksum != "" && a.Checksum == st.Checksum && a.Result != ResultCommandFailed
	}
	var versions []Version
	if hasRec && rec.Checksum == st.Checksum {
		versions = rec.versions()
		st.Pushed, st.PushedBy = rec.Time, rec.Node
	} else {
		for _, a := range acks { // no record of this push: the first node to have it had it after it
			if current(a) && a.Time != "" && (st.Pushed == "" || a.Time < st.Pushed) {
				st.Pushed, st.PushedEstimated = a.Time, true
			}
		}
	}
	for _, a := range acks {
		st.Nodes++
		why, isFrozen := "", false
		if a.File != "" {
			why, isFrozen = frozen[Lock(c.prefix(), a.File, a.Node)]
		}
		if isFrozen {
			st.Frozen = append(st.Frozen, Freeze{Node: a.Node, File: a.File, Reason: why})
		}
		if current(a) {
			st.Current++
			continue
		}
		lg := Laggard{Ack: a, Frozen: why}
		lg.BehindSince, lg.VersionsBehind = behindSince(versions, st.Pushed, a)
		st.Behind = append(st.Behind, lg)
	}
	sort.Slice(st.Behind, func(i, j int) bool { return st.Behind[i].Node < st.Behind[j].Node })
	sort.Slice(st.Frozen, func(i, j int) bool { return st.Frozen[i].Node < st.Frozen[j].Node })
	if st.Checksum == "" {
		return st, fmt.Errorf("%s/%s: %w: %s does not exist", l.Prefix, l.Key, ErrNoKey, l.Checksum())
	}
	return st, nil
}

// Stop turns a key's fleet-wide stop switch on: in and out refuse until
// Start.
func (c *Client) Stop(ctx context.Context, key, why string) error {
	l, err := c.layout(key)
	if err != nil {
		return err
	}
	if strings.TrimSpace(why) == "" {
		return fmt.Errorf("a reason is required")
	}
	return c.put(ctx, l.Stop(), []byte(why))
}

// Start turns the stop switch off.
func (c *Client) Start(ctx context.Context, key string) error {
	l, err := c.layout(key)
	if err != nil {
		return err
	}
	return c.del(ctx, l.Stop())
}

// Freeze stops deliveries to path on this node until Unfreeze.
func (c *Client) Freeze(ctx context.Context, path, why string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if strings.TrimSpace(why) == "" {
		why = fmt.Sprintf("no reason given for %s by %s at %s", abs, c.Node, c.now().UTC().Format(time.RFC3339))
	}
	return c.put(ctx, Lock(c.prefix(), abs, c.Node), []byte(why))
}

// Unfreeze lets deliveries to path on this node resume.
func (c *Client) Unfreeze(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return c.del(ctx, Lock(c.prefix(), abs, c.Node))
}

func (c *Client) put(ctx context.Context, key string, v []byte) error {
	if _, err := c.KV.Put(&consulapi.KVPair{Key: key, Value: v}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

func (c *Client) del(ctx context.Context, key string) error {
	if _, err := c.KV.Delete(key, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// Fetch returns the verified content of key (kvx copy's source).
func (c *Client) Fetch(ctx context.Context, key string) ([]byte, error) {
	l, err := c.layout(key)
	if err != nil {
		return nil, err
	}
	var b []byte
	_, err = c.readContent(ctx, l, "", "", inHand{}, func(s *snapshot) (err error) {
		b, err = c.content(ctx, s)
		return err
	})
	return b, err
}

// RawOptions describe kvx raw: one key's value to a file, no checksum
// layout.
type RawOptions struct {
	Key      string // the full key, no prefix added
	Path     string
	MinLines int
	File     atomicfile.Options
	Command  string
	Timeout  time.Duration
}

// Raw writes a key's value to a file if it changed, then runs the command.
func (c *Client) Raw(ctx context.Context, o RawOptions) Delivery {
	start := time.Now()
	d := Delivery{Key: o.Key, Path: o.Path}
	d.Err = func() error {
		p, _, err := c.KV.Get(o.Key, (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("read %s: %w", o.Key, err)
		}
		if p == nil {
			return refuse(RefusedMissing, "%s is missing", o.Key)
		}
		d.Bytes, d.Lines, d.Checksum = len(p.Value), checksum.Lines(p.Value), checksum.Of(p.Value)
		if d.Lines < o.MinLines {
			return refuse(RefusedTooShort, "%s: %d lines, fewer than the minimum of %d: not written", o.Key, d.Lines, o.MinLines)
		}
		r, err := atomicfile.Write(o.Path, p.Value, o.File)
		if err != nil {
			return fileRefusal(err)
		}
		d.Fixed = r.Fixed
		if !r.Written {
			return nil
		}
		d.Written = time.Now()
		if o.Command != "" {
			d.Output, err = runCommand(ctx, DeliverOptions{Key: o.Key, Path: o.Path, Command: o.Command, CommandTimeout: o.Timeout}, d.Checksum)
		}
		return err
	}()
	d.Took = time.Since(start)
	d.Result = deliveryResult(d)
	c.report("raw", o.Key, d.Bytes, d.Lines, d.Took, d.Result)
	return d
}
