package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CatalogOptions configure a catalog benchmark.
type CatalogOptions struct {
	Addr            string // host:port of the HTTP API
	Token           string // sent as X-Consul-Token when set
	Nodes           int    // simulated nodes registered
	ServicesPerNode int    // services on each node, each with one check
	// ServiceNames is how many distinct service names the instances share:
	// instance j of node i is service (i*ServicesPerNode+j) mod ServiceNames.
	ServiceNames int
	Registrars   int // concurrent registering connections
	// Watchers block on health/service/<target>?passing, OtherWatchers on
	// the other services, each on its own connection.
	Watchers      int
	OtherWatchers int
	Flips         int // times the target's check flips (each one measured)
	Readers       int // connections doing health/service GETs meanwhile
	GetRate       int // GETs a second, over all readers; 0: as fast as they can
	Prefix        string
	// ServerPID, when set, is the server's process (on this machine): its
	// idle resident set with the catalog loaded is read from /proc.
	ServerPID int
	// IdleWait is how long the server is left idle before its RSS is read
	// (default 5 s: the server returns freed memory after 2 s idle).
	IdleWait time.Duration
	Timeout  time.Duration // per flip: watchers that have not seen it by then count as missed
}

func (o *CatalogOptions) validate() error {
	switch {
	case o.Addr == "":
		return errors.New("bench: an address is required")
	case o.Nodes <= 0 || o.ServicesPerNode <= 0 || o.ServiceNames <= 1:
		return fmt.Errorf("bench: nodes %d, services per node %d, service names %d: need nodes and services, and at least 2 names", o.Nodes, o.ServicesPerNode, o.ServiceNames)
	case o.Registrars <= 0 || o.Watchers < 0 || o.OtherWatchers < 0 || o.Readers < 0 || o.GetRate < 0 || o.Flips <= 0:
		return errors.New("bench: registrars and flips must be positive, watchers, readers and the GET rate not negative")
	case o.Prefix == "":
		return errors.New("bench: a node name prefix is required")
	}
	return checkServerPID(o.ServerPID)
}

// CatalogResult is what a catalog benchmark measured.
type CatalogResult struct {
	Registrations int
	RegElapsed    time.Duration
	RegErrors     int64
	// The target service's watchers: how long after the check's write began
	// each saw each flip, over all flips; Missed counts the ones that did not
	// see a flip within the timeout.
	Seen                      int
	Missed                    int
	SeenP50, SeenP99, SeenMax time.Duration
	// OthersWoken counts answers to the other services' watchers while the
	// target's check flipped: each is a watcher woken for nothing.
	OthersWoken int64
	// GETs of health/service/:s?passing during the flips.
	Gets           int64
	GetErrors      int64
	GetP50, GetP99 time.Duration
	// With ServerPID, the server's resident set (bytes): idle with the
	// catalog loaded (before the watchers came), with the watchers blocked,
	// and idle again after they left (IdleWait each time).
	IdleRSS, RSSWithWatchers, RSSAfter uint64
}

func (r CatalogResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "register  %d instances (node + service + check each) in %.1fs: %.0f/s, errors %d\n",
		r.Registrations, r.RegElapsed.Seconds(), float64(r.Registrations)/r.RegElapsed.Seconds(), r.RegErrors)
	fmt.Fprintf(&b, "flip      target watchers saw it: %d (missed %d), p50 %s p99 %s max %s\n",
		r.Seen, r.Missed, round(r.SeenP50), round(r.SeenP99), round(r.SeenMax))
	fmt.Fprintf(&b, "others    watchers of other services woken: %d\n", r.OthersWoken)
	fmt.Fprintf(&b, "get       health/service/:s?passing: %d GETs, p50 %s p99 %s, errors %d",
		r.Gets, round(r.GetP50), round(r.GetP99), r.GetErrors)
	if r.IdleRSS > 0 {
		fmt.Fprintf(&b, "\nrss       server idle with the catalog loaded: %.1f MB; with the watchers: %.1f MB; idle after they left: %.1f MB",
			float64(r.IdleRSS)/1e6, float64(r.RSSWithWatchers)/1e6, float64(r.RSSAfter)/1e6)
	}
	return b.String()
}

func (o *CatalogOptions) serviceName(n int) string {
	return o.Prefix + "-svc-" + strconv.Itoa(n%o.ServiceNames)
}

func (o *CatalogOptions) nodeName(i int) string { return o.Prefix + "-node-" + strconv.Itoa(i) }

// registration is the body registering instance j of node i, its check in status.
func (o *CatalogOptions) registration(i, j int, status string) []byte {
	node, svc := o.nodeName(i), o.serviceName(i*o.ServicesPerNode+j)
	id := svc + "-" + strconv.Itoa(j)
	return []byte(fmt.Sprintf(`{"Node":%q,"Address":"10.%d.%d.%d","NodeMeta":{"bench":"kvx"},`+
		`"Service":{"ID":%q,"Service":%q,"Tags":["bench","v1"],"Port":%d},`+
		`"Check":{"CheckID":"service:%s","Name":"bench check","ServiceID":%q,"Status":%q}}`,
		node, i>>16&255, i>>8&255, i&255, id, svc, 8000+j, id, id, status))
}

// RunCatalog registers the catalog, starts the watchers, flips the check of
// one instance of the target service Flips times while readers GET, reads
// the server's RSS, then deregisters the nodes.
func RunCatalog(ctx context.Context, o CatalogOptions) (CatalogResult, error) {
	var res CatalogResult
	if err := o.validate(); err != nil {
		return res, err
	}
	if o.IdleWait == 0 {
		o.IdleWait = 5 * time.Second
	}
	defer cleanupCatalog(o)
	if err := registerCatalog(ctx, o, &res); err != nil {
		return res, err
	}
	if o.ServerPID > 0 {
		time.Sleep(o.IdleWait) // idle
		res.IdleRSS, _ = readRSS(o.ServerPID)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	target := o.serviceName(0)
	path := func(svc string) string { return "/v1/health/service/" + svc + "?passing" }
	var (
		mu      sync.Mutex
		flipAt  time.Time
		seen    []time.Duration
		answers atomic.Int64 // answers to the target's watchers that saw a change
		blocked atomic.Int64 // watchers that sent their blocking query
		woken   atomic.Int64
		wg      sync.WaitGroup
	)
	watcher := func(svc string, onAnswer func(index uint64)) {
		defer wg.Done()
		c := &conn{addr: o.Addr, token: o.Token}
		defer c.close()
		_, index, err := c.doIndexed("GET", path(svc), nil)
		if err != nil {
			return
		}
		for ctx.Err() == nil {
			blocked.Add(1)
			_, next, err := c.doIndexed("GET", path(svc)+"&wait=5m&index="+strconv.FormatUint(index, 10), nil)
			if err != nil || ctx.Err() != nil {
				return
			}
			if next != index {
				onAnswer(next)
			}
			index = next
		}
	}
	for range o.Watchers {
		wg.Add(1)
		go watcher(target, func(uint64) {
			mu.Lock()
			seen = append(seen, time.Since(flipAt))
			mu.Unlock()
			answers.Add(1)
		})
	}
	for i := range o.OtherWatchers {
		wg.Add(1)
		go watcher(o.serviceName(1+i%(o.ServiceNames-1)), func(uint64) { woken.Add(1) })
	}
	defer func() { cancel(); closeWatchers(o); wg.Wait() }()
	waitFor(ctx, 30*time.Second, func() bool { return blocked.Load() >= int64(o.Watchers+o.OtherWatchers) })
	time.Sleep(500 * time.Millisecond) // let the last blocking queries reach the server
	if o.ServerPID > 0 {
		res.RSSWithWatchers, _ = readRSS(o.ServerPID)
	}

	getsDone := make(chan struct{})
	var gets getStats
	go func() {
		defer close(getsDone)
		gets.run(ctx, o, path)
	}()

	writer := &conn{addr: o.Addr, token: o.Token}
	defer writer.close()
	woken.Store(0)
	for f := range o.Flips {
		status := []string{"critical", "passing"}[f%2]
		want := answers.Load() + int64(o.Watchers)
		mu.Lock()
		flipAt = time.Now()
		mu.Unlock()
		if code, err := writer.do("PUT", "/v1/catalog/register", o.registration(0, 0, status)); err != nil || code != 200 {
			return res, fmt.Errorf("bench: flip %d: status %d, %v", f, code, err)
		}
		waitFor(ctx, o.Timeout, func() bool { return answers.Load() >= want })
		res.Missed += int(max(0, want-answers.Load()))
		time.Sleep(300 * time.Millisecond) // the watchers block again
	}
	res.OthersWoken = woken.Load()
	cancel()
	<-getsDone
	mu.Lock()
	res.Seen = len(seen)
	if len(seen) > 0 {
		res.SeenP50, _, res.SeenP99, res.SeenMax = percentiles(seen)
	}
	mu.Unlock()
	res.Gets, res.GetErrors = gets.n, gets.errors
	if len(gets.lats) > 0 {
		res.GetP50, _, res.GetP99, _ = percentiles(gets.lats)
	}
	if o.ServerPID > 0 {
		closeWatchers(o)
		wg.Wait()
		time.Sleep(o.IdleWait) // idle: the watchers' connections are gone
		res.RSSAfter, _ = readRSS(o.ServerPID)
	}
	return res, nil
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() && ctx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// closeWatchers wakes every watcher by writing to each watched service: a
// blocked GET cannot be cancelled from here otherwise.
func closeWatchers(o CatalogOptions) {
	c := &conn{addr: o.Addr, token: o.Token}
	defer c.close()
	for i := range min(o.Nodes, o.ServiceNames) {
		body := fmt.Sprintf(`{"Node":%q,"Address":"10.255.0.1","Service":{"ID":"wake-%d","Service":%q}}`,
			o.Prefix+"-waker", i, o.serviceName(i))
		_, _ = c.do("PUT", "/v1/catalog/register", []byte(body))
	}
}

func registerCatalog(ctx context.Context, o CatalogOptions, res *CatalogResult) error {
	total := o.Nodes * o.ServicesPerNode
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range o.Registrars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &conn{addr: o.Addr, token: o.Token}
			defer c.close()
			for ctx.Err() == nil {
				n := int(next.Add(1)) - 1
				if n >= total {
					return
				}
				i, j := n/o.ServicesPerNode, n%o.ServicesPerNode
				if code, err := c.do("PUT", "/v1/catalog/register", o.registration(i, j, "passing")); err != nil || code != 200 {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res.Registrations, res.RegElapsed, res.RegErrors = total, time.Since(start), errs.Load()
	if errs.Load() == int64(total) {
		return fmt.Errorf("bench: every registration failed (is %s a Consul-compatible server?)", o.Addr)
	}
	return ctx.Err()
}

type getStats struct {
	n, errors int64
	lats      []time.Duration
}

// run GETs random services' health with o.Readers connections until ctx ends.
func (g *getStats) run(ctx context.Context, o CatalogOptions, path func(string) string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range o.Readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &conn{addr: o.Addr, token: o.Token}
			defer c.close()
			var lats []time.Duration
			var n, errs int64
			var every time.Duration // each reader's share of the rate
			if o.GetRate > 0 {
				every = time.Duration(float64(time.Second) * float64(o.Readers) / float64(o.GetRate))
			}
			next := time.Now()
			for ctx.Err() == nil {
				if every > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(every)
					if late := time.Since(next); late > every {
						next = time.Now() // fell behind: no burst to catch up
					}
				}
				t0 := time.Now()
				code, err := c.do("GET", path(o.serviceName(rand.N(o.ServiceNames))), nil)
				if err != nil || code != 200 {
					errs++
					continue
				}
				lats = append(lats, time.Since(t0))
				n++
			}
			mu.Lock()
			g.lats = append(g.lats, lats...)
			g.n += n
			g.errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
}

// cleanupCatalog deregisters the benchmark's nodes.
func cleanupCatalog(o CatalogOptions) {
	c := &conn{addr: o.Addr, token: o.Token}
	defer c.close()
	for i := range o.Nodes {
		_, _ = c.do("PUT", "/v1/catalog/deregister", []byte(fmt.Sprintf(`{"Node":%q}`, o.nodeName(i))))
	}
	_, _ = c.do("PUT", "/v1/catalog/deregister", []byte(fmt.Sprintf(`{"Node":%q}`, o.Prefix+"-waker")))
}
