package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// KV is Consul's KV API plus GetRaw, which reads one value with ?raw: the
// bytes as they are, with no JSON or base64 on either side. kvx out reads
// file contents this way; a thousand nodes fetching a 30 kB file at once is
// where that JSON would cost most.
type KV struct {
	*consulapi.KV
	http    *http.Client
	base    string // scheme://host[:port][path prefix]/v1/kv/
	txn     string // scheme://host[:port][path prefix]/v1/txn
	token   string
	auth    *consulapi.HttpBasicAuth
	dc      string
	stale   bool
	maxSize int64
}

// NewKV returns the KV API of a client built like New.
func NewKV(opts Options) (*KV, error) {
	conf := config(opts)
	unix := strings.HasPrefix(conf.Address, "unix://")
	c, err := consulapi.NewClient(conf) // fills conf: scheme, address, token, HTTP client
	if err != nil {
		return nil, fmt.Errorf("consul client %s: %w", conf.Address, err)
	}
	host := conf.Address
	if unix {
		host = "localhost" // the client's transport dials the socket whatever the host
	}
	return &KV{
		KV:      c.KV(),
		http:    conf.HttpClient,
		base:    conf.Scheme + "://" + host + conf.PathPrefix + "/v1/kv/",
		txn:     conf.Scheme + "://" + host + conf.PathPrefix + "/v1/txn",
		token:   conf.Token,
		auth:    conf.HttpAuth,
		dc:      conf.Datacenter,
		stale:   opts.Stale,
		maxSize: 1 << 30,
	}, nil
}

// query applies Options.Stale to a read's options.
func (k *KV) query(q *consulapi.QueryOptions) *consulapi.QueryOptions {
	if !k.stale {
		return q
	}
	if q == nil {
		return &consulapi.QueryOptions{AllowStale: true}
	}
	c := *q
	c.AllowStale = true
	return &c
}

// Get is consul/api's, with Options.Stale applied.
func (k *KV) Get(key string, q *consulapi.QueryOptions) (*consulapi.KVPair, *consulapi.QueryMeta, error) {
	return k.KV.Get(key, k.query(q))
}

// List is consul/api's, with Options.Stale applied.
func (k *KV) List(prefix string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error) {
	return k.KV.List(prefix, k.query(q))
}

// Keys is consul/api's, with Options.Stale applied.
func (k *KV) Keys(prefix, separator string, q *consulapi.QueryOptions) ([]string, *consulapi.QueryMeta, error) {
	return k.KV.Keys(prefix, separator, k.query(q))
}

// Txn is consul/api's, with Options.Stale applied (a transaction that
// writes is still applied by the leader).
func (k *KV) Txn(txn consulapi.KVTxnOps, q *consulapi.QueryOptions) (bool, *consulapi.KVTxnResponse, *consulapi.QueryMeta, error) {
	return k.KV.Txn(txn, k.query(q))
}

// params is the query string every raw read carries: the datacenter and
// ?stale, each when set.
func (k *KV) params() string {
	var p string
	if k.dc != "" {
		p += "&dc=" + url.QueryEscape(k.dc)
	}
	if k.stale {
		p += "&stale"
	}
	return p
}

// GetRaw returns the value of key and true, or false when there is no such
// key. It reads with the default consistency (from the leader).
func (k *KV) GetRaw(ctx context.Context, key string) ([]byte, bool, error) {
	v, found, _, err := k.GetRawAt(ctx, key, 0, 0)
	return v, found, err
}

// GetRawAt is GetRaw as a blocking query: with index > 0 the server answers
// once its index for key differs from index, or after wait (the server's
// default when 0). It also returns the index the answer was read at
// (X-Consul-Index), found or not, so the caller can block again from there.
// kvx out --watch blocks this way on the data key: the answer to the
// blocking query is the file, with no second request to fetch it.
func (k *KV) GetRawAt(ctx context.Context, key string, index uint64, wait time.Duration) ([]byte, bool, uint64, error) {
	a, err := k.Follow(ctx, key, index, wait, FollowOptions{})
	return a.Value, a.Found, a.Index, err
}

// FollowOptions are what a kvx server can do within a raw blocking read
// (see pkg/server/kv_follow.go); a Consul server ignores them.
type FollowOptions struct {
	// Read: keys to read from the same state as the answer.
	Read []string
	// AckKey, AckValue: a write for the server to batch with others'.
	AckKey   string
	AckValue []byte
}

// Followed is the answer to Follow.
type Followed struct {
	Value []byte
	Found bool
	Index uint64
	// Read holds FollowOptions.Read's keys in order (nil for a missing one)
	// when ReadOK; a server that does not know X-Kvx-Read leaves it false.
	Read   []*consulapi.KVPair
	ReadOK bool
	// AckTaken: the server took the write; AckErr: why it refused it. Both
	// empty: the server does not batch writes (Consul), write it yourself.
	AckTaken bool
	AckErr   string
	// Changed is when the server applied the answer's index, from the age
	// it gave (X-Kvx-Index-Age) and this clock; zero when it gave none.
	Changed time.Time
}

// Follow is GetRawAt that also asks a kvx server for the keys in o.Read
// and hands it o's write.
func (k *KV) Follow(ctx context.Context, key string, index uint64, wait time.Duration, o FollowOptions) (Followed, error) {
	var a Followed
	u := k.base + (&url.URL{Path: key}).EscapedPath() + "?raw" + k.params()
	if index > 0 {
		u += "&index=" + strconv.FormatUint(index, 10)
		if wait > 0 {
			u += "&wait=" + strconv.FormatInt(wait.Milliseconds(), 10) + "ms"
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return a, err
	}
	k.authorize(req)
	// The file as stored, not gzipped on the wire: a file worth compressing
	// is pushed compressed (kvx in -z), once, and stays so in KV; gzip on
	// top would only cost every node an inflate.
	req.Header["Accept-Encoding"] = []string{"identity"}
	if len(o.Read) > 0 {
		b, err := json.Marshal(o.Read)
		if err != nil {
			return a, err
		}
		req.Header["X-Kvx-Read"] = []string{string(b)}
	}
	if o.AckKey != "" {
		req.Header["X-Kvx-Ack"] = []string{(&url.URL{Path: o.AckKey}).EscapedPath() + " " + base64.StdEncoding.EncodeToString(o.AckValue)}
	}
	resp, err := k.http.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	if h := resp.Header.Get("X-Consul-Index"); h != "" {
		if a.Index, err = strconv.ParseUint(h, 10, 64); err != nil {
			return a, fmt.Errorf("GET %s: X-Consul-Index %q: %w", key, h, err)
		}
	}
	if h := resp.Header.Get("X-Kvx-Index-Age"); h != "" {
		if age, err := time.ParseDuration(h); err == nil && age >= 0 {
			a.Changed = time.Now().Add(-age)
		}
	}
	a.AckTaken = resp.Header.Get("X-Kvx-Ack") == "accepted"
	a.AckErr = resp.Header.Get("X-Kvx-Ack-Error")
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		io.Copy(io.Discard, resp.Body)
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return Followed{}, fmt.Errorf("GET %s: %s: %s", key, resp.Status, strings.TrimSpace(string(msg)))
	}
	if h, ok := resp.Header["X-Kvx-Read"]; ok && len(o.Read) > 0 {
		if err := json.Unmarshal([]byte(h[0]), &a.Read); err != nil || len(a.Read) != len(o.Read) {
			return Followed{}, fmt.Errorf("GET %s: X-Kvx-Read answer for %d keys: %d, %v", key, len(o.Read), len(a.Read), err)
		}
		a.ReadOK = true
	}
	if resp.StatusCode == http.StatusNotFound {
		return a, nil
	}
	if a.Value, err = readAll(resp, k.maxSize); err != nil {
		return Followed{}, fmt.Errorf("GET %s: %w", key, err)
	}
	a.Found = true
	return a, nil
}

// GetKeys reads keys in one read-only transaction (/v1/txn, a get-or-empty
// per key), so they all come from one state: the result has one pair per
// key, in order, nil for a key that does not exist. It is what KV.Txn
// does for such a read, without its general-purpose encoding: kvx out
// makes this read on every delivery.
func (k *KV) GetKeys(ctx context.Context, keys []string) ([]*consulapi.KVPair, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	body := make([]byte, 0, 64*len(keys))
	body = append(body, '[')
	for i, key := range keys {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"KV":{"Verb":"get-or-empty","Key":`...)
		kb, err := json.Marshal(key)
		if err != nil {
			return nil, err
		}
		body = append(body, kb...)
		body = append(body, "}}"...)
	}
	body = append(body, ']')
	u := k.txn
	if p := k.params(); p != "" {
		u += "?" + p[1:]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header["Content-Type"] = []string{"application/json"}
	k.authorize(req)
	resp, err := k.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := readAll(resp, k.maxSize)
	if err != nil {
		return nil, fmt.Errorf("read transaction: %w", err)
	}
	var out struct {
		Results []struct{ KV *consulapi.KVPair }
		Errors  []struct {
			OpIndex int
			What    string
		}
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusConflict:
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, fmt.Errorf("read transaction: %s: %w", resp.Status, err)
		}
	default:
		return nil, fmt.Errorf("read transaction: %s: %s", resp.Status, strings.TrimSpace(string(b[:min(len(b), 1024)])))
	}
	if len(out.Errors) > 0 || len(out.Results) != len(keys) {
		var what []string
		for _, e := range out.Errors {
			what = append(what, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
		}
		return nil, fmt.Errorf("read transaction: %d results for %d keys: %s", len(out.Results), len(keys), strings.Join(what, "; "))
	}
	pairs := make([]*consulapi.KVPair, len(keys))
	for i, r := range out.Results {
		if r.KV != nil && r.KV.ModifyIndex != 0 { // get-or-empty answers a missing key with index 0
			pairs[i] = r.KV
		}
	}
	return pairs, nil
}

func (k *KV) authorize(req *http.Request) {
	if k.token != "" {
		req.Header["X-Consul-Token"] = []string{k.token}
	}
	if k.auth != nil {
		req.SetBasicAuth(k.auth.Username, k.auth.Password)
	}
}

// readAll reads a response body up to limit bytes, in one buffer when the
// response says its length.
func readAll(resp *http.Response, limit int64) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= limit {
		buf := make([]byte, n) // one allocation, one copy
		_, err := io.ReadFull(resp.Body, buf)
		return buf, err
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err == nil && int64(len(buf)) > limit {
		err = fmt.Errorf("answer over %d bytes", limit)
	}
	return buf, err
}
