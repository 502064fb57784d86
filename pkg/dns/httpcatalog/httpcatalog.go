package httpcatalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	kvxdns "github.com/kvxproject/kvx/pkg/dns"
)

// Options configure a Catalog.
type Options struct {
	// Client says how to reach the servers (address, token, datacenter;
	// CONSUL_HTTP_* fill what it leaves empty).
	Client client.Options
	// Servers, when given, are the HTTP addresses of several servers (an
	// agent's -join list), each with Client's other settings: the view reads
	// from one, and moves to the next when a read fails.
	Servers []string
	// Call, when given, runs every read instead of the clients above: the
	// owner's own way to reach the servers (kvx agent's Call, with its
	// failover).
	Call func(ctx context.Context, f func(*consulapi.Client) error) error
	// AllowStale reads with ?stale (any server answers), as -dns-allow-stale.
	AllowStale bool
	// Idle is how long a service's watch lives without a query (default 5m).
	Idle time.Duration
	// FirstFetch bounds the wait for the first answer of a service (default 2s).
	FirstFetch time.Duration
	Logger     *slog.Logger
}

// Catalog is a cached, blocking-query-fed view of the servers' catalog.
type Catalog struct {
	apis []*consulapi.Client // one per server
	cur  atomic.Int64        // the one read from
	opts Options
	ctx  context.Context

	mu    sync.Mutex
	views map[string]*view // "service <name>" and "nodes"
}

// view is one watched answer.
type view struct {
	ready    chan struct{} // closed once the first fetch ended
	mu       sync.RWMutex
	data     any // []kvxdns.Instance or []kvxdns.Node
	err      error
	lastUsed atomic.Int64 // unix nanoseconds
}

// New returns a Catalog whose watches run until ctx is done.
func New(ctx context.Context, opts Options) (*Catalog, error) {
	var apis []*consulapi.Client
	addrs := opts.Servers
	if len(addrs) == 0 {
		addrs = []string{opts.Client.Address}
	}
	if opts.Call != nil {
		addrs = nil
	}
	for _, a := range addrs {
		o := opts.Client
		o.Address = a
		api, err := client.New(o)
		if err != nil {
			return nil, err
		}
		apis = append(apis, api)
	}
	if opts.Idle <= 0 {
		opts.Idle = 5 * time.Minute
	}
	if opts.FirstFetch <= 0 {
		opts.FirstFetch = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Catalog{apis: apis, opts: opts, ctx: ctx, views: map[string]*view{}}, nil
}

// api is the client of the server read from now, and its number.
func (c *Catalog) api() (*consulapi.Client, int64) {
	i := c.cur.Load()
	return c.apis[i], i
}

// failed moves the reads to the next server after server i failed (once,
// however many views saw it fail).
func (c *Catalog) failed(i int64) {
	if len(c.apis) > 1 && c.cur.CompareAndSwap(i, (i+1)%int64(len(c.apis))) {
		c.opts.Logger.Warn("dns: catalog reads move to the next server", "from", c.opts.serverName(i), "to", c.opts.serverName((i+1)%int64(len(c.apis))))
	}
}

func (o *Options) serverName(i int64) string {
	if o.Call != nil {
		return "(the owner's)"
	}
	if len(o.Servers) == 0 {
		return o.Client.Address
	}
	return o.Servers[i]
}

// Serve is what an agent calls to answer DNS: a DNS server (cfg as for a
// server's; an empty Datacenter is asked of the servers) reading the
// catalog of the servers at opts.Client through a Catalog. The watches stop
// with ctx; Close the server.
func Serve(ctx context.Context, cfg kvxdns.Config, opts Options) (*kvxdns.Server, error) {
	c, err := New(ctx, opts)
	if err != nil {
		return nil, err
	}
	if cfg.Datacenter == "" {
		if cfg.Datacenter, err = c.Datacenter(ctx); err != nil {
			return nil, err
		}
	}
	return kvxdns.New(cfg, c, opts.Logger)
}

// Datacenter asks the servers for their datacenter (agent/self).
func (c *Catalog) Datacenter(ctx context.Context) (string, error) {
	ask := func(api *consulapi.Client) (string, error) {
		self, err := api.Agent().Self()
		if err != nil {
			return "", err
		}
		dc, _ := self["Config"]["Datacenter"].(string)
		if dc == "" {
			return "", errors.New("agent/self names no datacenter")
		}
		return dc, nil
	}
	if c.opts.Call != nil {
		var dc string
		err := c.opts.Call(ctx, func(api *consulapi.Client) (err error) {
			dc, err = ask(api)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("dns: ask the servers for the datacenter: %w", err)
		}
		return dc, nil
	}
	var errs []error
	for i, api := range c.apis {
		dc, err := ask(api)
		if err == nil {
			c.cur.Store(int64(i))
			return dc, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.opts.serverName(int64(i)), err))
	}
	return "", fmt.Errorf("dns: ask the servers for the datacenter: %w", errors.Join(errs...))
}

// Listener is a DNS listener for a process that binds its ports before it
// starts (kvx agent: a.Listen(l)): Bind, then Run serves until its context
// ends, learning the datacenter from the servers first when cfg has none.
type Listener struct {
	*kvxdns.Listener
	cancel context.CancelFunc // stops the Catalog's watches
}

// NewListener returns a DNS listener reading the catalog through opts
// (typically Options{Call: agent.Call, AllowStale: ...}); optional makes a
// taken address a warning and no DNS, as for kvx's built-in address.
func NewListener(cfg kvxdns.Config, opts Options, optional bool) (*Listener, error) {
	ctx, cancel := context.WithCancel(context.Background())
	c, err := New(ctx, opts)
	if err != nil {
		cancel()
		return nil, err
	}
	l, err := kvxdns.NewListener(cfg, c, opts.Logger, kvxdns.ListenerOptions{Optional: optional, Datacenter: c.Datacenter})
	if err != nil {
		cancel()
		return nil, err
	}
	return &Listener{Listener: l, cancel: cancel}, nil
}

// Run serves until ctx ends.
func (l *Listener) Run(ctx context.Context) error {
	defer l.cancel()
	return l.Listener.Run(ctx)
}

// Close releases the ports when Run never ran.
func (l *Listener) Close() error {
	l.cancel()
	return l.Listener.Close()
}

// get returns the view of key, starting its watch with fetch on first use,
// and waits for its first answer.
func (c *Catalog) get(ctx context.Context, key string, fetch fetchFunc) (any, error) {
	c.mu.Lock()
	v := c.views[key]
	if v == nil {
		v = &view{ready: make(chan struct{})}
		c.views[key] = v
		v.lastUsed.Store(time.Now().UnixNano())
		go c.watch(key, v, fetch)
	}
	c.mu.Unlock()
	v.lastUsed.Store(time.Now().UnixNano())
	t := time.NewTimer(c.opts.FirstFetch)
	defer t.Stop()
	select {
	case <-v.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("%s: no answer from the servers within %s", key, c.opts.FirstFetch)
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.data == nil {
		return nil, v.err
	}
	return v.data, nil
}

// watch keeps v current with blocking queries until it is idle or the
// catalog's context ends; then it forgets v.
// fetchFunc reads one answer from api, blocking past index.
type fetchFunc func(api *consulapi.Client, index uint64) (any, uint64, error)

func (c *Catalog) watch(key string, v *view, fetch fetchFunc) {
	first := true
	defer func() {
		c.mu.Lock()
		if c.views[key] == v {
			delete(c.views, key)
		}
		c.mu.Unlock()
		if first { // stopped before its first answer: say why
			v.mu.Lock()
			v.err = fmt.Errorf("%s: %w", key, c.ctx.Err())
			v.mu.Unlock()
			close(v.ready)
		}
	}()
	var index uint64
	backoff := 100 * time.Millisecond
	tries := 0 // of the first answer
	for c.ctx.Err() == nil {
		if !first && time.Since(time.Unix(0, v.lastUsed.Load())) > c.opts.Idle {
			return
		}
		var (
			data   any
			next   uint64
			err    error
			server int64
		)
		if c.opts.Call != nil {
			err = c.opts.Call(c.ctx, func(api *consulapi.Client) (err error) {
				data, next, err = fetch(api, index)
				return err
			})
		} else {
			var api *consulapi.Client
			api, server = c.api()
			data, next, err = fetch(api, index)
		}
		if tries++; err != nil && first && tries < len(c.apis) && c.ctx.Err() == nil {
			// The first answer is awaited by a query: try the next
			// server at once.
			c.opts.Logger.Warn("dns: catalog read failed", "watch", key, "server", c.opts.serverName(server), "err", err)
			c.failed(server)
			continue
		}
		v.mu.Lock()
		if err == nil {
			v.data, v.err = data, nil
		} else {
			v.err = err
		}
		v.mu.Unlock()
		if first {
			close(v.ready)
			first = false
		}
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.opts.Logger.Warn("dns: catalog watch failed", "watch", key, "server", c.opts.serverName(server), "err", err, "retry_in", backoff)
			if c.opts.Call == nil {
				c.failed(server)
			}
			index = 0 // another server has other indexes
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if next < index {
			next = 0 // the index went backwards (a restore): start over
		}
		index = next
	}
}

func (c *Catalog) query(index uint64) *consulapi.QueryOptions {
	wait := min(c.opts.Idle, 5*time.Minute)
	return (&consulapi.QueryOptions{AllowStale: c.opts.AllowStale, WaitIndex: index, WaitTime: wait}).WithContext(c.ctx)
}

// ServiceInstances implements kvxdns.Catalog.
func (c *Catalog) ServiceInstances(ctx context.Context, service string) ([]kvxdns.Instance, error) {
	data, err := c.get(ctx, "service "+strings.ToLower(service), func(api *consulapi.Client, index uint64) (any, uint64, error) {
		entries, meta, err := api.Health().Service(service, "", false, c.query(index))
		if err != nil {
			return nil, 0, err
		}
		out := make([]kvxdns.Instance, 0, len(entries))
		for _, e := range entries {
			if e.Node == nil || e.Service == nil {
				continue
			}
			status := kvxdns.StatusPassing
			for _, ch := range e.Checks {
				status = kvxdns.WorstStatus(status, ch.Status)
			}
			in := kvxdns.Instance{
				Node: e.Node.Node, NodeAddress: e.Node.Address,
				ID: e.Service.ID, Service: e.Service.Service, Address: e.Service.Address, Port: e.Service.Port,
				Tags: e.Service.Tags, Status: status,
				WeightPassing: e.Service.Weights.Passing, WeightWarning: e.Service.Weights.Warning,
			}
			out = append(out, in)
		}
		return out, meta.LastIndex, nil
	})
	if err != nil {
		return nil, err
	}
	return data.([]kvxdns.Instance), nil
}

// Nodes implements kvxdns.Catalog.
func (c *Catalog) Nodes(ctx context.Context) ([]kvxdns.Node, error) {
	data, err := c.get(ctx, "nodes", func(api *consulapi.Client, index uint64) (any, uint64, error) {
		nodes, meta, err := api.Catalog().Nodes(c.query(index))
		if err != nil {
			return nil, 0, err
		}
		out := make([]kvxdns.Node, len(nodes))
		for i, n := range nodes {
			out[i] = kvxdns.Node{Name: n.Node, Address: n.Address, Meta: n.Meta}
		}
		return out, meta.LastIndex, nil
	})
	if err != nil {
		return nil, err
	}
	return data.([]kvxdns.Node), nil
}

// Node implements kvxdns.Catalog, from the node list.
func (c *Catalog) Node(ctx context.Context, name string) (*kvxdns.Node, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	for i := range nodes {
		if strings.EqualFold(nodes[i].Name, name) {
			return &nodes[i], nil
		}
	}
	return nil, nil
}
