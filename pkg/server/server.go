package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/kvxproject/kvx/pkg/agent/local"
	"github.com/kvxproject/kvx/pkg/httpd"
	"github.com/kvxproject/kvx/pkg/server/state"
	"github.com/kvxproject/kvx/pkg/tlsutil"
)

// Server is one kvx server node.
type Server struct {
	opts   Options
	logger *slog.Logger
	store  *state.Store
	tel    *telemetry

	raft      *raft.Raft
	logs      raft.LogStore
	transport *raft.NetworkTransport
	mux       *muxListener
	closers   []io.Closer

	dns         *dnsServer   // nil unless Options.DNS
	httpLn      net.Listener // nil with HTTPAddr HTTPDisabled
	httpSrv     *httpd.Server
	httpsLn     net.Listener // nil without HTTPSAddr
	httpsSrv    *httpd.Server
	tls         *tlsutil.Store // nil without TLS options
	internalSrv *httpd.Server
	forwarder   *http.Client

	blocking       atomic.Int64  // blocking queries in flight
	wakeups        atomic.Int64  // times a blocking query was woken by a change it watched
	requests       atomic.Int64  // HTTP API requests answered
	routeStats     []*routeStats // per endpoint, flushed every second (http_metrics.go)
	acks           *ackBatcher   // acknowledgements taken from X-Kvx-Ack (kv_acks.go)
	answers        answerCache   // encoded answers shared by the watchers of one service
	applied        applyClock    // when recent indexes were applied here (applied.go)
	aclPolicies    sync.Map      // policy ID -> parsedPolicy (acl.go)
	aclAuthorizers sync.Map      // token AccessorID -> cachedAuthorizer (acl.go)
	agent          *local.State  // the services and checks registered on this node's agent
	agentHandler   http.Handler  // its /v1/agent/* endpoints
	beats          heartbeats    // the agents' last heartbeats, on the leader
	ready          atomic.Bool   // leader, and every entry of earlier terms is applied
	// catalogKick tells reconcileCatalog that this node became a ready leader.
	catalogKick chan struct{}

	cluster   clusterState
	logPolicy logPolicy // Raft messages whose level depends on the cluster's state
	identity  identityKeeper
	started   bool // New returned it: Close says "server stopped"

	// sessionTimers destroy, on the leader, the sessions whose TTL ran out.
	sessionTimers sessionTimers

	peersMu        sync.Mutex
	peers          map[string]peer // servers that said hello, for cluster formation
	discoverRounds int             // owned by the discover goroutine

	shutdown     chan struct{}
	raftDown     chan struct{} // closed once Raft has shut down (see await)
	shutdownOnce sync.Once
	wg           sync.WaitGroup
	closeErr     error
}

// New starts a server: it binds its ports, opens its data dir, starts Raft and
// serves HTTP. It returns once the ports are bound; WaitForLeader tells when it
// can take writes.
func New(opts Options) (_ *Server, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var (
		stored identity
		have   bool
	)
	if !opts.Dev {
		if stored, have, err = loadIdentity(opts.DataDir); err != nil {
			return nil, err
		}
		if err := resolveIdentity(&opts, stored, have); err != nil {
			return nil, err
		}
	}
	if opts.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("node name: %w", err)
		}
		opts.NodeName = h
	}
	opts.withDefaults()
	if opts.HTTPAddr == HTTPDisabled && opts.HTTPSAddr == "" {
		return nil, invalid("data dir %s: its HTTP API is off (-http-addr \"\"): give -https-addr, or -http-addr", opts.DataDir)
	}
	s := &Server{opts: opts, logger: opts.Logger, store: state.New(), shutdown: make(chan struct{}), raftDown: make(chan struct{}),
		catalogKick: make(chan struct{}, 1), acks: newAckBatcher()}
	s.agent = s.newLocalAgent()
	s.agentHandler = s.agent.Handler()
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.tel, err = newTelemetry(opts.Metrics); err != nil {
		return nil, err
	}
	if !opts.Dev {
		s.identity.dataDir = opts.DataDir
		s.cluster.persist = func(id clusterID) error {
			return s.identity.update(func(i *identity) { i.ClusterID = id.String() })
		}
	}
	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	peerServer, peerClient := s.peerTLS()
	if s.mux, err = newMux(opts.RaftAddr, &s.cluster, s.logger, peerServer); err != nil {
		return nil, err
	}
	if ip := s.mux.ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
		return nil, fmt.Errorf("raft address %s: give a routable address, other servers dial it", opts.RaftAddr)
	}
	if err := s.listenAPI(); err != nil {
		return nil, err
	}
	if !opts.Dev {
		if have {
			s.identity.id = stored // else the first start writes the file
		}
		if err := s.keepIdentity(stored.ClusterID); err != nil {
			return nil, err
		}
	}
	s.forwarder = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialMux(ctx, addr, muxHTTP, s.cluster.get(), 5*time.Second, peerClient)
		},
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     time.Minute,
	}}
	if err := s.startRaft(peerClient); err != nil {
		return nil, err
	}
	api := s.handler()
	s.httpSrv = s.newHTTPServer(api)
	s.httpsSrv = s.newHTTPServer(api)
	s.internalSrv = s.newHTTPServer(limitBodies(s.internalHandler(api)))
	s.serveAPI()
	s.goServe(s.internalSrv, s.mux.http)
	if err := s.startDNS(); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.tombstoneGC()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.reportStats()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.writeAcks()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.reconcileCatalog(s.catalogKick)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.releaseMemoryWhenIdle()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.trackHeartbeats()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runLocalAgent()
	}()
	s.started = true
	s.logger.Info("server started", "node", opts.NodeName, "http", s.HTTPAddr(), "https", s.HTTPSAddr(), "raft", s.RaftAddr(), "dns", s.DNSAddr(), "dev", opts.Dev)
	return s, nil
}

// keepIdentity writes who this node is into its data dir, with the addresses
// actually bound (a port 0 became a real port), and makes the cluster ID it
// already knows (from its data dir) the one it uses.
func (s *Server) keepIdentity(cluster string) error {
	if cluster != "" {
		id, err := parseClusterID(cluster)
		if err != nil {
			return err
		}
		s.cluster.id.Store(&id)
	}
	return s.identity.update(func(i *identity) {
		i.ClusterID = cluster
		i.Node = s.opts.NodeName
		i.Datacenter = s.opts.Datacenter
		i.RaftAddr = s.RaftAddr()
		i.HTTPAddr = HTTPDisabled
		if s.httpLn != nil {
			i.HTTPAddr = listenAddrToKeep(s.opts.HTTPAddr, s.httpLn.Addr())
		}
	})
}

func (s *Server) goServe(srv *httpd.Server, ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.logger.Error("http serve", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

func (s *Server) startRaft(peerTLS func() *tls.Config) error {
	o := s.opts
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(o.NodeName)
	conf.Logger = newHCLogger(s.logger, &s.logPolicy)
	conf.HeartbeatTimeout = o.HeartbeatTimeout
	conf.ElectionTimeout = o.HeartbeatTimeout
	conf.LeaderLeaseTimeout = o.HeartbeatTimeout / 2
	conf.BatchApplyCh = true
	notify := make(chan bool, 16)
	conf.NotifyCh = notify
	conf.MaxAppendEntries = 256
	if o.SnapshotThreshold > 0 {
		conf.SnapshotThreshold = o.SnapshotThreshold
	}
	if o.SnapshotInterval > 0 {
		conf.SnapshotInterval = o.SnapshotInterval
	}
	if o.TrailingLogs > 0 {
		conf.TrailingLogs = o.TrailingLogs
	}

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if o.Dev {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		dir := filepath.Join(o.DataDir, "raft")
		if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		// raft-wal's Close leaves its metadata db open (and locked), so kvx
		// owns that db and closes it after the WAL.
		meta := &metadb.BoltMetaDB{}
		wal, err := raftwal.Open(filepath.Join(dir, "wal"), raftwal.WithLogger(conf.Logger.Named("wal")), raftwal.WithMetaStore(meta))
		if err != nil {
			meta.Close()
			return fmt.Errorf("open raft log %s: %w", dir, err)
		}
		s.closers = append(s.closers, wal, meta)
		fss, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, conf.Logger.Named("snapshot"))
		if err != nil {
			return fmt.Errorf("open snapshots %s: %w", dir, err)
		}
		logs, stable, snaps = wal, wal, fss
	}
	cached := logs // -dev: the log is in memory already
	if !o.Dev {
		c, err := raft.NewLogCache(1024, logs)
		if err != nil {
			return fmt.Errorf("raft log cache: %w", err)
		}
		cached = c
	}
	s.logs = cached
	s.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: raftLayer{s.mux.raft, &s.cluster, &s.logPolicy, peerTLS}, MaxPool: 4, Timeout: 10 * time.Second, Logger: conf.Logger.Named("transport"),
	})
	hasState, err := raft.HasExistingState(cached, stable, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	s.raft, err = raft.NewRaft(conf, &fsm{store: s.store, logger: s.logger, applied: &s.applied}, cached, stable, snaps, s.transport)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.monitorLeadership(notify)
	}()
	switch {
	case hasState:
		s.logger.Info("recovering from data dir", "dir", o.DataDir)
		s.campaignAlone()
	case o.Dev || (o.BootstrapExpect <= 1 && len(o.Join) == 0):
		servers := []raft.Server{{ID: conf.LocalID, Address: s.transport.LocalAddr()}}
		if err := s.cluster.set(clusterIDFor(servers)); err != nil {
			return err
		}
		if err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		s.campaignAlone()
	default:
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.discover()
		}()
	}
	return nil
}

// HTTPAddr is the bound HTTP address ("" with HTTP disabled).
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// RaftAddr is the bound Raft (and forwarding, and join) address.
func (s *Server) RaftAddr() string { return s.mux.ln.Addr().String() }

// NodeName is this node's name, which is also its Raft server ID.
func (s *Server) NodeName() string { return s.opts.NodeName }

// IsLeader reports whether this node is the Raft leader now.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// WaitForLeader blocks until the cluster has a leader this node knows of.
func (s *Server) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leader: %w", ctx.Err())
		case <-s.shutdown:
			return errors.New("wait for leader: server shut down")
		case <-t.C:
		}
	}
}

// Run serves until ctx is done, then shuts the server down.
func (s *Server) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-s.shutdown:
	}
	return s.Close()
}

// handOverLeadership asks another voter, one that has not said goodbye,
// to take over before a leader stops, so that a rolling restart costs a
// hand-over instead of an election timeout.
func (s *Server) handOverLeadership() {
	if s.raft == nil || s.raft.State() != raft.Leader {
		return
	}
	servers, _, err := s.raftConfiguration()
	if err != nil {
		return
	}
	left := s.logPolicy.hasLeft()
	var to *raft.Server
	for i, srv := range servers {
		if srv.Suffrage == raft.Voter && srv.ID != raft.ServerID(s.opts.NodeName) && !left[string(srv.Address)] {
			to = &servers[i]
			break
		}
	}
	if to == nil {
		return // alone, or every other voter has stopped
	}
	done := make(chan error, 1)
	go func() { done <- s.raft.LeadershipTransferToServer(to.ID, to.Address).Error() }()
	select {
	case err := <-done:
		if err != nil {
			s.logger.Warn("leadership transfer", "to", to.ID, "err", err)
		} else {
			s.logger.Info("leadership handed over", "node", s.opts.NodeName, "to", to.ID)
		}
	case <-time.After(3 * time.Second):
		s.logger.Warn("leadership transfer timed out", "node", s.opts.NodeName, "to", to.ID)
	}
}

// sayGoodbye tells every other server that this one is stopping cleanly, so
// that they log its absence as expected rather than as an error (see
// logPolicy). It waits at most a second.
func (s *Server) sayGoodbye() {
	if s.raft == nil {
		return
	}
	servers, _, err := s.raftConfiguration()
	if err != nil {
		return
	}
	me := s.self()
	var wg sync.WaitGroup
	for _, srv := range servers {
		if string(srv.Address) == me.RaftAddr {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok bool
			if err := s.internalCallTimeout(string(srv.Address), "/internal/v1/goodbye", me, &ok, time.Second); err != nil {
				s.logger.Debug("goodbye", "to", srv.ID, "err", err)
			}
		}()
	}
	wg.Wait()
}

// Close stops serving, wakes every blocking query, and shuts Raft down
// cleanly. It is safe to call more than once.
func (s *Server) Close() error {
	s.shutdownOnce.Do(func() {
		close(s.shutdown)
		s.logPolicy.stopping.Store(true)
		var errs []error
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if s.dns != nil {
			if err := s.dns.Close(); err != nil {
				errs = append(errs, fmt.Errorf("dns: %w", err))
			}
		}
		for _, srv := range []*httpd.Server{s.httpSrv, s.httpsSrv, s.internalSrv} {
			if srv != nil {
				if err := srv.Shutdown(ctx); err != nil {
					srv.Close()
				}
			}
		}
		for _, ln := range []net.Listener{s.httpLn, s.httpsLn} {
			if ln != nil {
				ln.Close()
			}
		}
		if s.started {
			s.sayGoodbye()
			s.handOverLeadership()
		}
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
			}
		}
		close(s.raftDown)
		if s.transport != nil {
			s.transport.Close()
		}
		if s.mux != nil {
			s.mux.Close()
		}
		if s.forwarder != nil {
			s.forwarder.CloseIdleConnections()
		}
		s.wg.Wait()
		for _, c := range s.closers {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		s.closeErr = errors.Join(errs...)
		if s.started {
			s.logger.Info("server stopped", "node", s.opts.NodeName)
		}
	})
	return s.closeErr
}
