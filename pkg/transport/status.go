package transport

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/checksum"
)

// Status is what kvx status reports for a key.
type Status struct {
	Key      string `json:"key"`
	Checksum string `json:"checksum"`
	Stop     string `json:"stop,omitempty"` // the reason, when the stop switch is on
	Nodes    int    `json:"nodes"`          // nodes that acknowledged anything
	Current  int    `json:"current"`        // nodes whose file has Checksum
	Behind   []Ack  `json:"behind"`         // the others, with why
}

// Status reads the checksum and every acknowledgement in one transaction.
func (c *Client) Status(ctx context.Context, key string) (Status, error) {
	l, err := c.layout(key)
	if err != nil {
		return Status{}, err
	}
	ops := consulapi.KVTxnOps{
		{Verb: consulapi.KVGetOrEmpty, Key: l.Checksum()},
		{Verb: consulapi.KVGetOrEmpty, Key: l.Stop()},
		{Verb: consulapi.KVGetTree, Key: l.Nodes()},
	}
	ok, resp, _, err := c.KV.Txn(ops, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return Status{}, fmt.Errorf("read status of %s: %w", l.Key, err)
	}
	if !ok {
		return Status{}, fmt.Errorf("read status of %s: %s", l.Key, txnErrors(resp))
	}
	st := Status{Key: l.Key, Behind: []Ack{}}
	for _, p := range resp.Results {
		switch {
		case p.Key == l.Checksum():
			st.Checksum = strings.TrimSpace(string(p.Value))
		case p.Key == l.Stop() && p.ModifyIndex != 0:
			st.Stop = reason(p)
		case strings.HasPrefix(p.Key, l.Nodes()):
			a, ok := parseAck(p)
			if !ok {
				a = Ack{Node: strings.TrimPrefix(p.Key, l.Nodes()), Result: ResultError, Error: "unreadable acknowledgement"}
			}
			st.Nodes++
			if st.Checksum != "" && a.Checksum == st.Checksum && a.Result != ResultCommandFailed {
				st.Current++
			} else {
				st.Behind = append(st.Behind, a)
			}
		}
	}
	sort.Slice(st.Behind, func(i, j int) bool { return st.Behind[i].Node < st.Behind[j].Node })
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
	_, err = c.readContent(ctx, l, "", "", nil, func(s *snapshot) (err error) {
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
