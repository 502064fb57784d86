package transport

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
	"github.com/kvxproject/kvx/pkg/watch"
)

// countingProxy is a reverse proxy in front of a real server that counts
// the requests it passes, by method and path family. With strip, it drops
// the kvx headers both ways, as a Consul server would ignore them.
type countingProxy struct {
	mu     sync.Mutex
	counts map[string]int
	// stripReads drops X-Kvx-Read from answers only, as when the keys do
	// not fit in a header.
	stripReads atomic.Bool
	// gets lists the KV GETs as they arrive: when, whether each carried
	// an acknowledgement, when its answer came back from the server (zero
	// while it waits).
	gets []*proxiedGet // under mu
}

type proxiedGetKey struct{}

type proxiedGet struct {
	arrived, answered time.Time
	changed           time.Time // answered less the answer's X-Kvx-Index-Age; zero without one
	ack               bool
}

func (p *countingProxy) count(what string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[what]
}

func startCountingProxy(t *testing.T, srv *servertest.Server, strip bool) (*countingProxy, string) {
	t.Helper()
	target, _ := url.Parse("http://" + srv.HTTPAddr())
	p := &countingProxy{counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		// Before the answer is passed on: no later than the client gets it.
		if g, ok := resp.Request.Context().Value(proxiedGetKey{}).(*proxiedGet); ok {
			p.mu.Lock()
			g.answered = time.Now()
			if age, err := time.ParseDuration(resp.Header.Get("X-Kvx-Index-Age")); err == nil {
				g.changed = g.answered.Add(-age)
			}
			p.mu.Unlock()
		}
		for h := range resp.Header {
			if strip && strings.HasPrefix(h, "X-Kvx-") || p.stripReads.Load() && h == "X-Kvx-Read" {
				resp.Header.Del(h)
			}
		}
		return nil
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		family := r.URL.Path
		switch {
		case strings.HasPrefix(family, "/v1/kv/"):
			family = "/v1/kv/"
		}
		g := &proxiedGet{arrived: time.Now(), ack: r.Header.Get("X-Kvx-Ack") != ""}
		r = r.WithContext(context.WithValue(r.Context(), proxiedGetKey{}, g))
		p.mu.Lock()
		p.counts[r.Method+" "+family]++
		if r.Method == "GET" && family == "/v1/kv/" {
			p.gets = append(p.gets, g)
		}
		p.mu.Unlock()
		if strip {
			for h := range r.Header {
				if strings.HasPrefix(h, "X-Kvx-") {
					r.Header.Del(h)
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return p, strings.TrimPrefix(hs.URL, "http://")
}

// nodeThroughProxy starts a server, a pusher on it, a counting proxy in
// front of it and a node, web-1, following o (in a temp dir when o.Path
// is empty) through the proxy until the test ends.
func nodeThroughProxy(t *testing.T, strip bool, o DeliverOptions) (*servertest.Server, *Client, *countingProxy, string) {
	t.Helper()
	srv := servertest.Start(t)
	pusher := newClient(srv, "pusher")
	proxy, addr := startCountingProxy(t, srv, strip)
	kv, err := client.NewKV(client.Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	node := &Client{KV: kv, Node: "web-1"}
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "hosts")
	}
	go node.Watch(t.Context(), o, watch.Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}, nil)
	return srv, pusher, proxy, o.Path
}

func watchThroughProxy(t *testing.T, strip bool) (*countingProxy, int) {
	_, pusher, proxy, path := nodeThroughProxy(t, strip, DeliverOptions{Key: "fw/hosts"})
	const versions = 3
	for v := 1; v <= versions; v++ {
		content := lines(40, "v"+string(rune('0'+v)))
		mustPush(t, pusher, PushOptions{Key: "fw/hosts", Content: content})
		sum := checksum.Of(content)
		servertest.Eventually(t, "the node acknowledges version "+string(rune('0'+v)), func() bool {
			st, err := pusher.Status(ctx, "fw/hosts")
			return err == nil && st.Current == 1 && st.Checksum == sum
		})
		if got := readFile(t, path); string(got) != string(content) {
			t.Fatalf("version %d: the file holds %q", v, got)
		}
	}
	return proxy, versions
}

// Against a kvx server, a delivery is one exchange: the blocking read
// brings the data and the node's keys, the next one carries the
// acknowledgement. No read transaction, no PUT.
func TestWatchFollowsInOneExchange(t *testing.T) {
	proxy, versions := watchThroughProxy(t, false)
	if n := proxy.count("PUT /v1/txn"); n != 0 {
		t.Errorf("%d read transactions, want none", n)
	}
	if n := proxy.count("PUT /v1/kv/"); n != 0 {
		t.Errorf("%d acknowledgement PUTs, want none", n)
	}
	if n := proxy.count("GET /v1/kv/"); n < versions {
		t.Errorf("%d blocking reads for %d versions", n, versions)
	}
}

// Against a kvx server the query that carries an acknowledgement leaves
// at a multiple of AckDelay after the change its delivery brought (the
// server says how long ago it applied it), and after the delivery.
func TestWatchHoldsTheNextQueryAckDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	_, pusher, proxy, _ := nodeThroughProxy(t, false, DeliverOptions{Key: "hd/hosts", AckDelay: delay})
	for v := 1; v <= 2; v++ {
		content := lines(40, "v"+string(rune('0'+v)))
		mustPush(t, pusher, PushOptions{Key: "hd/hosts", Content: content})
		servertest.Eventually(t, "version acknowledged", func() bool {
			st, err := pusher.Status(ctx, "hd/hosts")
			return err == nil && st.Current == 1 && st.Checksum == checksum.Of(content)
		})
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	acks, dated := 0, 0
	for i, g := range proxy.gets {
		if !g.ack || i == 0 {
			continue
		}
		acks++
		// One node, one connection: its queries follow each other.
		prev := proxy.gets[i-1]
		from, what := prev.changed, "the change the answer before it brought"
		if from.IsZero() { // an index too old for the server to date: the answer's arrival
			from, what = prev.answered, "the answer before it"
		} else {
			dated++
		}
		if since := g.arrived.Sub(from); since < delay {
			t.Errorf("query %d carried an acknowledgement %v after %s, want at least %v", i, since, what, delay)
		}
	}
	if acks < 2 || dated < 2 {
		t.Fatalf("%d queries carried an acknowledgement, %d after an answer dated by X-Kvx-Index-Age; want one per version", acks, dated)
	}
}

// A server that ignores the kvx headers (Consul) gets the read
// transaction and the PUT, and the acknowledgements land all the same.
func TestWatchFallsBackWithoutKvxHeaders(t *testing.T) {
	proxy, versions := watchThroughProxy(t, true)
	if n := proxy.count("PUT /v1/txn"); n < versions {
		t.Errorf("%d read transactions for %d versions", n, versions)
	}
	if n := proxy.count("PUT /v1/kv/"); n < versions {
		t.Errorf("%d acknowledgement PUTs for %d versions", n, versions)
	}
}

// An answer without the keys makes the delivery PUT its acknowledgement;
// an older one still waiting to ride on a query must not then overwrite
// it.
func TestWatchDropsAQueuedAckWhenItPutsANewerOne(t *testing.T) {
	srv, pusher, proxy, _ := nodeThroughProxy(t, false, DeliverOptions{Key: "fd/hosts"})
	current := func(content []byte) func() bool {
		return func() bool {
			st, err := pusher.Status(ctx, "fd/hosts")
			return err == nil && st.Current == 1 && st.Checksum == checksum.Of(content)
		}
	}
	v1 := lines(40, "v1")
	mustPush(t, pusher, PushOptions{Key: "fd/hosts", Content: v1})
	servertest.Eventually(t, "version 1 acknowledged", current(v1))
	proxy.stripReads.Store(true)
	gets := proxy.count("GET /v1/kv/")
	v2 := lines(40, "v2")
	mustPush(t, pusher, PushOptions{Key: "fd/hosts", Content: v2})
	servertest.Eventually(t, "version 2 acknowledged (a PUT)", current(v2))
	// The node's next blocking query has gone out (the one that answered
	// version 2 was counted before); a marker acknowledged after it lands
	// in the same batch or a later one.
	servertest.Eventually(t, "the next query", func() bool { return proxy.count("GET /v1/kv/") >= gets+1 })
	marker, err := client.NewKV(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := marker.Follow(ctx, "kvx/fd/hosts/data", 0, 0, client.FollowOptions{AckKey: "marker", AckValue: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the marker stored", func() bool {
		p, _, _ := srv.Client.KV().Get("marker", nil)
		return p != nil
	})
	if !current(v2)() {
		st, _ := pusher.Status(ctx, "fd/hosts")
		t.Fatalf("the acknowledgement went back to an older version: %+v", st)
	}
}

func TestAckWait(t *testing.T) {
	const delay = 300 * time.Millisecond
	now := time.Now()
	for _, tc := range []struct {
		name    string
		changed time.Time
		want    time.Duration
	}{
		{"no change time: the delay", time.Time{}, delay},
		{"50ms after the change", now.Add(-50 * time.Millisecond), 250 * time.Millisecond},
		{"past the first slot: the second", now.Add(-350 * time.Millisecond), 250 * time.Millisecond},
		{"on a slot: a whole delay", now.Add(-600 * time.Millisecond), delay},
		{"a change in the future (clock step): the delay", now.Add(time.Second), delay},
	} {
		if got := ackWait(delay, tc.changed, now); got != tc.want {
			t.Errorf("%s: ackWait = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := ackWait(0, now.Add(-time.Second), now); got != 0 {
		t.Errorf("no delay: ackWait = %v, want 0", got)
	}
}
