package client

import (
	"context"
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
	token   string
	auth    *consulapi.HttpBasicAuth
	dc      string
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
		token:   conf.Token,
		auth:    conf.HttpAuth,
		dc:      conf.Datacenter,
		maxSize: 1 << 30,
	}, nil
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
	u := k.base + (&url.URL{Path: key}).EscapedPath() + "?raw"
	if k.dc != "" {
		u += "&dc=" + url.QueryEscape(k.dc)
	}
	if index > 0 {
		u += "&index=" + strconv.FormatUint(index, 10)
		if wait > 0 {
			u += "&wait=" + strconv.FormatInt(wait.Milliseconds(), 10) + "ms"
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, 0, err
	}
	if k.token != "" {
		req.Header["X-Consul-Token"] = []string{k.token}
	}
	if k.auth != nil {
		req.SetBasicAuth(k.auth.Username, k.auth.Password)
	}
	resp, err := k.http.Do(req)
	if err != nil {
		return nil, false, 0, err
	}
	defer resp.Body.Close()
	var at uint64
	if h := resp.Header.Get("X-Consul-Index"); h != "" {
		if at, err = strconv.ParseUint(h, 10, 64); err != nil {
			return nil, false, 0, fmt.Errorf("GET %s: X-Consul-Index %q: %w", key, h, err)
		}
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		io.Copy(io.Discard, resp.Body)
		return nil, false, at, nil
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, false, 0, fmt.Errorf("GET %s: %s: %s", key, resp.Status, strings.TrimSpace(string(msg)))
	}
	if n := resp.ContentLength; n >= 0 && n <= k.maxSize {
		buf := make([]byte, n) // one allocation, one copy
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return nil, false, 0, fmt.Errorf("GET %s: %w", key, err)
		}
		return buf, true, at, nil
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, k.maxSize+1))
	if err == nil && int64(len(buf)) > k.maxSize {
		err = fmt.Errorf("value over %d bytes", k.maxSize)
	}
	if err != nil {
		return nil, false, 0, fmt.Errorf("GET %s: %w", key, err)
	}
	return buf, true, at, nil
}
