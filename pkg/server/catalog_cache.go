package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
)

// answerCache shares the encoded answer of a query among the requests that
// ask it at the same index. When a key or a service changes, every watcher
// of it wakes at once and asks the same question: the first one encodes the
// answer, the others copy its bytes. It is sound for the queries whose index
// moves with every change to their answer: a KV key or prefix (its index is
// the highest ModifyIndex or tombstone index under it; a reap of tombstones,
// which can take a prefix's index back to an older value with fewer
// entries, changes the generation the answers are kept under), and a query
// on one service (see state/catalog_write.go), whatever its filters, since
// the filters read only what the service's index covers. Once ACLs filter
// answers, the token's identity must be part of the key.
type answerCache struct {
	mu      sync.Mutex
	entries map[string]*cachedAnswer
	bytes   int
}

type cachedAnswer struct {
	mu    sync.Mutex // held while the answer is encoded: the others wait for it
	index uint64
	gen   uint64
	enc   *encoded // the body, and its gzip form once asked for (http_gzip.go)
	size  int      // len(body) as the cache counts it; guarded by answerCache.mu
}

// Bounds of the cache: answers are dropped at random beyond them.
const (
	answerCacheEntries = 4096
	answerCacheBytes   = 8 << 20
)

// answerKey is the cache key of a request: its path and the query parameters
// that shape the answer (not index, wait, consistency or token).
func answerKey(r *http.Request) string {
	q := url.Values{}
	for k, v := range r.URL.Query() {
		switch k {
		case "index", "wait", "stale", "consistent", "token", "near", "dc", "ns", "pretty", "cached":
		default:
			q[k] = v
		}
	}
	return r.URL.Path + "?" + q.Encode()
}

// body returns the encoded answer for key at index (and generation gen),
// encoding it with build only when no other request has done so.
func (c *answerCache) body(key string, index, gen uint64, build func() ([]byte, error)) (*encoded, error) {
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]*cachedAnswer{}
	}
	e := c.entries[key]
	if e == nil {
		for k, old := range c.entries {
			if len(c.entries) < answerCacheEntries && c.bytes < answerCacheBytes {
				break
			}
			delete(c.entries, k)
			c.bytes -= old.size
		}
		e = &cachedAnswer{}
		c.entries[key] = e
	}
	c.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.enc != nil && e.index == index && e.gen == gen {
		return e.enc, nil
	}
	b, err := build()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.entries[key] == e { // not dropped meanwhile
		c.bytes += len(b) - e.size
		e.size = len(b)
	}
	c.mu.Unlock()
	e.index, e.gen, e.enc = index, gen, &encoded{body: b}
	return e.enc, nil
}

// encodeJSON adapts a value-building answer to the cache.
func encodeJSON(answer func() (any, error)) func() ([]byte, error) {
	return func() ([]byte, error) {
		v, err := answer()
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode answer: %w", err)
		}
		return b, nil
	}
}
