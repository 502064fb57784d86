package agent

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/agent/config"
	"github.com/kvxproject/kvx/pkg/agent/local"
	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/tlsutil"
)

// Defaults.
const (
	DefaultHTTPAddr     = "127.0.0.1:8500"
	DefaultSyncInterval = time.Minute
	defaultHeartbeat    = 10 * time.Second // until the leader says otherwise
)

// Options configure an agent.
type Options struct {
	Join      []string // HTTP addresses of servers
	NodeName  string
	ConfigDir string // "" for none
	HTTPAddr  string // where the agent serves the HTTP API; "" for DefaultHTTPAddr, HTTPDisabled for none
	// HTTPSAddr serves the API over TLS too ("" for none); TLS has the
	// certificates, also used towards https:// servers (tls.go).
	HTTPSAddr string
	TLS       TLSOptions
	// MaxConnsPerClient caps the API's connections per client IP (0:
	// DefaultMaxConnsPerClient, negative: no cap).
	MaxConnsPerClient int
	// Advertise is the node's address in the catalog; "" for the local
	// address that reaches the first server.
	Advertise          string
	DataDir            string // keeps the node ID; "" for an ID derived from the name
	EnableScriptChecks bool
	LeaveOnTerminate   bool
	SyncInterval       time.Duration // full sync period; 0 for DefaultSyncInterval
	// MinCheckInterval is the shortest check interval (0: 1s, as Consul).
	MinCheckInterval time.Duration
	Version          string
	// ACLAgentToken is the token of the agent's own work: its catalog sync
	// and heartbeats (-acl-agent-token). Requests it proxies carry their
	// own.
	ACLAgentToken string
	Logger        *slog.Logger
}

// Listener is something the agent serves on its own address: Bind takes
// its port (all listeners bind before the agent starts anything, so a port
// in use fails the start before the catalog is touched), Run serves until
// ctx ends and returns after it has stopped.
type Listener interface {
	Bind() error
	Run(ctx context.Context) error
	Close() error // releases the port if Run never ran
}

// Agent is a running kvx agent. Make it with New, add listeners, Run it.
type Agent struct {
	opts  Options
	log   *slog.Logger
	srv   *servers
	state *local.State

	listeners []Listener
	httpAddr  chan string // the HTTP API's bound address, once
	httpsAddr chan string // the HTTPS API's
	tls       *tlsutil.Store
	closers   []func()

	dcMu sync.Mutex
	dc   string

	reloadMu sync.Mutex
	beats    atomic.Int64 // heartbeats the servers took
	watches  watchRunner
}

// LoadConfig reads a config dir (for -validate and reloads).
func LoadConfig(dir string, enableScripts bool) (*config.Definitions, error) {
	return config.LoadDir(dir, config.Options{EnableScriptChecks: enableScripts, ValidateWatch: validateWatch})
}

// New makes an agent: it loads the config dir (a bad file is an error
// naming the file and field) and binds nothing yet.
func New(opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("node name: %w", err)
		}
		opts.NodeName = h
	}
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = DefaultHTTPAddr
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	st, err := loadTLS(&opts)
	if err != nil {
		return nil, err
	}
	srv, err := newServers(opts.Join, serverClientOptions(&opts, st))
	if err != nil {
		return nil, err
	}
	var defs *config.Definitions
	if opts.ConfigDir != "" {
		if defs, err = LoadConfig(opts.ConfigDir, opts.EnableScriptChecks); err != nil {
			return nil, err
		}
	}
	id, err := nodeID(opts.DataDir, opts.NodeName)
	if err != nil {
		return nil, err
	}
	addr := opts.Advertise
	if addr == "" {
		addr = outboundAddr(opts.Join[0])
	}
	a := &Agent{opts: opts, log: opts.Logger, srv: srv, dc: "dc1", httpAddr: make(chan string, 1), httpsAddr: make(chan string, 1), tls: st}
	var authorize func(*http.Request) (local.Authz, error)
	if opts.ACLAgentToken != "" {
		authorize = a.authorize
	}
	// The datacenter is the servers'; learnDatacenter asks them.
	a.state = local.New(local.Options{
		Node: local.Node{ID: id, Node: opts.NodeName, Address: addr,
			TaggedAddresses: map[string]string{"lan": addr, "lan_ipv4": addr, "wan": addr, "wan_ipv4": addr},
			Meta:            map[string]string{"consul-version": opts.Version, "consul-network-segment": ""}},
		ManageNode:         true,
		Datacenter:         "dc1",
		Catalog:            catalog{srv},
		EnableScriptChecks: opts.EnableScriptChecks,
		SyncInterval:       opts.SyncInterval,
		MinCheckInterval:   opts.MinCheckInterval,
		Logger:             opts.Logger,
		OnRegistered:       a.persist,
		Authorize:          authorize,
	})
	if defs != nil {
		a.warn(defs)
		if err := a.state.LoadConfig(defs); err != nil {
			return nil, err
		}
		a.watches.defs = defs.Watches
	}
	if err := a.restore(); err != nil {
		return nil, err
	}
	a.addHTTPListeners()
	return a, nil
}

// registeredFile keeps, in the data dir, the services and checks
// registered through the API, which a restart registers again (as
// Consul's agent does).
const registeredFile = "registered.json"

func (a *Agent) persist(r local.Registered) {
	if a.opts.DataDir == "" {
		return
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err == nil {
		err = atomicfile.Replace(filepath.Join(a.opts.DataDir, registeredFile), b, atomicfile.Options{Mode: 0o600})
	}
	if err != nil {
		a.log.Warn("keep the API registrations in the data dir", "err", err)
	}
}

func (a *Agent) restore() error {
	if a.opts.DataDir == "" {
		return nil
	}
	path := filepath.Join(a.opts.DataDir, registeredFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	var r local.Registered
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, err := range a.state.Restore(r) {
		a.log.Warn("an API registration kept in the data dir is not registered again", "err", err)
	}
	return nil
}

func (a *Agent) warn(defs *config.Definitions) {
	for _, w := range defs.Warnings {
		a.log.Warn("config", "warning", w)
	}
}

// Listen adds a listener, which Run starts with the others.
func (a *Agent) Listen(l Listener) { a.listeners = append(a.listeners, l) }

// Call runs f with a client of the servers, moving on to the next server
// while one cannot be reached (f must be idempotent): how a listener (a
// DNS server) reads the catalog.
func (a *Agent) Call(ctx context.Context, f func(c *consulapi.Client) error) error {
	return a.srv.do(ctx, f)
}

// State returns the node's agent state.
func (a *Agent) State() *local.State { return a.state }

// NodeName returns the agent's node name.
func (a *Agent) NodeName() string { return a.opts.NodeName }

// HTTPAddr waits until the HTTP API is bound and returns its address.
func (a *Agent) HTTPAddr(ctx context.Context) (string, error) {
	select {
	case addr := <-a.httpAddr:
		a.httpAddr <- addr
		return addr, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Reload reads the config dir again: a bad file is an error naming the
// file and field, and the running definitions stay.
func (a *Agent) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.opts.ConfigDir == "" {
		return nil
	}
	defs, err := LoadConfig(a.opts.ConfigDir, a.opts.EnableScriptChecks)
	if err != nil {
		return fmt.Errorf("reload %s: %w", a.opts.ConfigDir, err)
	}
	a.warn(defs)
	if err := a.state.LoadConfig(defs); err != nil {
		return fmt.Errorf("reload %s: %w", a.opts.ConfigDir, err)
	}
	a.setWatches(defs.Watches)
	a.log.Info("config reloaded", "services", len(defs.Services), "checks", len(defs.AllChecks()), "watches", len(defs.Watches))
	return nil
}

// Run runs the agent until ctx ends: listeners, checks, sync, heartbeats.
// Then, with LeaveOnTerminate, it deregisters its node.
func (a *Agent) Run(ctx context.Context) error {
	for i, l := range a.listeners {
		if err := l.Bind(); err != nil {
			for _, b := range a.listeners[:i] {
				_ = b.Close()
			}
			return err
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, len(a.listeners))
	var wg sync.WaitGroup
	for _, l := range a.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Run(runCtx); err != nil && runCtx.Err() == nil {
				errc <- err
			}
		}()
	}
	wg.Add(4)
	go func() { defer wg.Done(); _ = a.state.Run(runCtx) }()
	go func() { defer wg.Done(); a.runWatches(runCtx) }()
	go func() { defer wg.Done(); a.heartbeats(runCtx) }()
	go func() { defer wg.Done(); a.learnDatacenter(runCtx) }()
	a.log.Info("agent started", "node", a.opts.NodeName, "servers", a.opts.Join)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	for _, c := range a.closers {
		c()
	}
	defer a.srv.closeIdle() // after the leave's own call
	if a.opts.LeaveOnTerminate {
		lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer lcancel()
		if lerr := a.state.Leave(lctx); lerr != nil {
			a.log.Warn("leave the catalog", "err", lerr)
		} else {
			a.log.Info("left the catalog", "node", a.opts.NodeName)
		}
	}
	return err
}

// heartbeats tells the servers this node is alive, as often as the
// leader asks.
func (a *Agent) heartbeats(ctx context.Context) {
	// The first sync registers the node; a heartbeat before it would be
	// refused.
	_ = a.state.SyncNow(ctx)
	interval := defaultHeartbeat
	failing := false
	for {
		ans, unknown, err := a.srv.heartbeat(ctx, a.opts.NodeName)
		next := interval
		switch {
		case unknown:
			a.log.Info("the catalog lost this node: registering it again")
			_ = a.state.SyncNow(ctx)
			next = 0
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			if !failing { // once per outage, not every second
				a.log.Warn("heartbeat failed; retrying every second", "err", err)
			}
			failing, next = true, time.Second
		default:
			if failing {
				a.log.Info("heartbeats reach the servers again")
				failing = false
			}
			a.beats.Add(1)
			if d, err := time.ParseDuration(ans.Interval); err == nil && d > 0 {
				interval, next = d, d
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// learnDatacenter asks the servers for their datacenter.
func (a *Agent) learnDatacenter(ctx context.Context) {
	for {
		var self map[string]map[string]any
		err := a.srv.do(ctx, func(c *consulapi.Client) error {
			var err error
			self, err = c.Agent().Self()
			return err
		})
		if err == nil {
			if dc, ok := self["Config"]["Datacenter"].(string); ok && dc != "" {
				a.dcMu.Lock()
				a.dc = dc
				a.dcMu.Unlock()
				a.state.SetDatacenter(dc)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (a *Agent) datacenter() string {
	a.dcMu.Lock()
	defer a.dcMu.Unlock()
	return a.dc
}

// nodeID is the node's ID: kept in the data dir, else derived from its
// name.
func nodeID(dataDir, name string) (string, error) {
	h := sha256.Sum256([]byte("kvx-node-id:" + name))
	id := fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	if dataDir == "" {
		return id, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dataDir, "node-id")
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(strings.TrimSpace(string(b))) == 36:
		return strings.TrimSpace(string(b)), nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return id, nil
}

// outboundAddr is the local address that reaches server, or 127.0.0.1.
func outboundAddr(server string) string {
	host := server
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	c, err := net.Dial("udp", host)
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
		return ua.IP.String()
	}
	return "127.0.0.1"
}

// handler serves /v1/agent/* itself and forwards the rest.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	agentLocal := a.state.Handler()
	for _, p := range []string{"/v1/agent/services", "/v1/agent/checks", "/v1/agent/service/", "/v1/agent/check/",
		"/v1/agent/health/service/", "/v1/agent/maintenance"} {
		mux.Handle(p, agentLocal)
	}
	mux.HandleFunc("/v1/agent/self", a.handleSelf)
	mux.HandleFunc("/v1/agent/members", a.handleMembers)
	mux.HandleFunc("/v1/agent/reload", a.handleReload)
	mux.Handle("/", a.newProxy())
	return mux
}

func (a *Agent) handleSelf(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method "+r.Method+" not allowed", http.StatusMethodNotAllowed)
		return
	}
	dc := a.datacenter()
	addr := a.opts.Advertise
	if addr == "" {
		addr = outboundAddr(a.opts.Join[0])
	}
	_, portStr, _ := net.SplitHostPort(a.boundHTTP())
	port, _ := strconv.Atoi(portStr)
	syncs, writes := a.state.Stats()
	local.WriteJSON(w, map[string]any{
		"Config": map[string]any{"Datacenter": dc, "PrimaryDatacenter": dc, "NodeName": a.opts.NodeName,
			"NodeID": a.state.NodeID(), "Version": a.opts.Version, "Revision": "", "Server": false},
		"Member": map[string]any{"Name": a.opts.NodeName, "Addr": addr, "Port": port, "Status": local.MemberAlive,
			"Tags": map[string]string{"role": "node", "dc": dc, "build": a.opts.Version, "id": a.state.NodeID()}},
		"Stats": map[string]any{"agent": map[string]string{"syncs": strconv.FormatInt(syncs, 10), "catalog_writes": strconv.FormatInt(writes, 10),
			"heartbeats": strconv.FormatInt(a.beats.Load(), 10),
			"services":   strconv.Itoa(len(a.state.Services())), "checks": strconv.Itoa(len(a.state.Checks()))}},
		"Meta": map[string]string{},
	})
}

func (a *Agent) boundHTTP() string {
	select {
	case addr := <-a.httpAddr:
		a.httpAddr <- addr
		return addr
	default:
		return a.opts.HTTPAddr
	}
}

func (a *Agent) handleMembers(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method "+r.Method+" not allowed", http.StatusMethodNotAllowed)
		return
	}
	ms, err := a.srv.members(r.Context(), a.datacenter())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if a.opts.ACLAgentToken != "" { // read with the agent's token: shown as the request's allows
		az, err := a.authorize(r)
		if err != nil {
			var se *statusError
			if errors.As(err, &se) {
				http.Error(w, se.msg, se.code)
			} else {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
			return
		}
		ms = slices.DeleteFunc(ms, func(m local.Member) bool { return !az.NodeRead(m.Name) })
	}
	local.WriteMembers(w, ms)
}

// handleReload is PUT /v1/agent/reload: SIGHUP's reload, its error a 500.
func (a *Agent) handleReload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", "PUT")
		http.Error(w, "method "+r.Method+" not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := a.Reload(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}
