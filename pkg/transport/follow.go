package transport

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
)

// follower is a KV that can follow a key the kvx way (pkg/client's KV):
// the blocking raw read of the data also reads the node's other keys from
// the same state, and carries the node's acknowledgement for the server
// to batch. Against a kvx server a delivery is then one exchange; a Consul
// server ignores both and the watch falls back to its read transaction and
// PUT.
type follower interface {
	Follow(ctx context.Context, key string, index uint64, wait time.Duration, o client.FollowOptions) (client.Followed, error)
}

// following is one watch's state between its blocking queries and its
// deliveries (which run one after the other, on the watch's goroutine; the
// mutex is for the report callbacks of tests and benches).
type following struct {
	c    *Client
	f    follower
	l    Layout
	keys []string // read with each answer: checksum, stop, the node's freeze and acknowledgement

	mu      sync.Mutex
	reads   map[string]*consulapi.KVPair // the last answer's, nil when the server did not read them
	changed time.Time                    // when the server applied the last answer's index; zero if not said
	// The acknowledgement waiting to be read back: sent with every query
	// until an answer shows it stored (a server that took it and died
	// before writing it gets it again).
	ackKey   string
	ackValue []byte
}

func (c *Client) newFollowing(f follower, l Layout, o DeliverOptions) (*following, error) {
	path, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, err
	}
	fl := &following{c: c, f: f, l: l, keys: []string{l.Checksum(), l.Stop(), Lock(c.prefix(), path, c.Node)}}
	if !o.NoAck {
		fl.keys = append(fl.keys, l.Node(c.Node))
	}
	return fl, nil
}

func (fl *following) query(ctx context.Context, index uint64, wait time.Duration) ([]byte, uint64, error) {
	fl.mu.Lock()
	o := client.FollowOptions{Read: fl.keys, AckKey: fl.ackKey, AckValue: fl.ackValue}
	fl.mu.Unlock()
	a, err := fl.f.Follow(ctx, fl.l.Data(), index, wait, o)
	if err != nil {
		return nil, 0, err
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.reads, fl.changed = nil, a.Changed
	if a.ReadOK {
		fl.reads = make(map[string]*consulapi.KVPair, len(fl.keys))
		for i, k := range fl.keys {
			fl.reads[k] = a.Read[i]
		}
	}
	switch {
	case o.AckKey == "":
	case a.AckErr != "":
		fl.c.log().Warn("acknowledge", "key", fl.l.Data(), "err", a.AckErr)
		fl.ackKey, fl.ackValue = "", nil
	case !a.AckTaken:
		// Not a kvx server after all (another behind the same address):
		// written as a PUT, as against Consul.
		_, perr := fl.c.KV.Put(&consulapi.KVPair{Key: o.AckKey, Value: o.AckValue}, (&consulapi.WriteOptions{}).WithContext(ctx))
		if perr != nil {
			fl.c.log().Warn("acknowledge", "key", fl.l.Data(), "err", perr)
		}
		fl.ackKey, fl.ackValue = "", nil
	case fl.reads != nil && fl.reads[o.AckKey] != nil && bytes.Equal(fl.reads[o.AckKey].Value, o.AckValue) && fl.ackKey == o.AckKey:
		fl.ackKey, fl.ackValue = "", nil // read back: stored
	}
	if !a.Found {
		return nil, a.Index, nil
	}
	return a.Value, a.Index, nil
}

// inHand is what the last answer holds for the delivery it woke. The
// acknowledgement goes with the next query when the server is a kvx one
// (it read the keys); otherwise it is a PUT, as against Consul.
func (fl *following) inHand(pre []byte) inHand {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	h := inHand{pre: pre, reads: fl.reads, changed: fl.changed}
	if fl.reads == nil {
		// This answer came without the keys (over X-Kvx-Read's size, or
		// another server): the delivery PUTs its acknowledgement, which an
		// older one still waiting here must not overwrite.
		fl.ackKey, fl.ackValue = "", nil
	} else {
		h.deferAck = func(key string, value []byte) {
			fl.mu.Lock()
			fl.ackKey, fl.ackValue = key, value
			fl.mu.Unlock()
		}
	}
	return h
}
