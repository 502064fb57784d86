package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/metrics"
	"github.com/kvxproject/kvx/pkg/server"
)

type serverOptions struct {
	server.Options
	hashSecrets   bool // -acl-hash-secrets: Options.ACL.KeepSecrets is its negation
	dogstatsdAddr string
	logLevel      string
	logJSON       bool
	gcMinHeapMB   int
	dns           dnsFlags
}

func newServerCmd() *cobra.Command {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Consul-compatible, Raft-replicated KV server",
		Long: `Run a kvx server node. With -dev, one node in memory on 127.0.0.1:8500.
Otherwise durable in -data-dir; three or five nodes form a cluster with
-bootstrap-expect and -join. The data dir remembers the node's name,
datacenter and addresses from its first start, so a restart needs only
-data-dir; a restart with another -node, -datacenter or -raft-addr is refused. SIGHUP reloads the TLS certificate, key
and CA files: new connections use them, open ones go on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServer(cmd, o) },
	}
	f := cmd.Flags()
	o.dns.register(f) // dns_flags.go
	f.BoolVar(&o.Dev, "dev", false, "one node, in memory, fast timers: for a laptop or a test")
	f.StringVar(&o.DataDir, "data-dir", "", "directory for the Raft log, snapshots and the node's identity (required without -dev)")
	f.StringVar(&o.NodeName, "node", "", "node name, unique in the cluster (default: the data dir's, else the host name)")
	f.StringVar(&o.Datacenter, "datacenter", "", "datacenter name reported to clients (default: the data dir's, else "+server.DefaultDatacenter+")")
	f.StringVar(&o.HTTPAddr, "http-addr", "", "address of the Consul-compatible HTTP API (default: the data dir's, else "+server.DefaultHTTPAddr+")")
	f.StringVar(&o.RaftAddr, "raft-addr", "", "address for Raft, request forwarding and joins; other servers dial it (default: the data dir's, else "+server.DefaultRaftAddr+")")
	f.IntVar(&o.BootstrapExpect, "bootstrap-expect", 0, "servers that form the first cluster (0 or 1 with no -join: this node alone)")
	f.StringSliceVar(&o.Join, "join", nil, "raft address of another server to join (repeatable, or comma separated)")
	f.DurationVar(&o.HeartbeatTimeout, "raft-timeout", 0, "Raft heartbeat and election timeout (default 1s)")
	f.DurationVar(&o.NodeTimeout, "node-timeout", server.DefaultNodeTimeout, "an agent whose heartbeats stop for this long has its node's serfHealth marked critical")
	f.DurationVar(&o.SessionTTLMin, "session-ttl-min", server.DefaultSessionTTLMin, "smallest session TTL accepted (the leader destroys a session not renewed for twice its TTL)")
	f.BoolVar(&o.ACL.Enabled, "acl-enabled", false, "enforce ACLs: every request needs a token whose policies allow it (see the README's Security section)")
	f.StringVar(&o.ACL.DefaultPolicy, "acl-default-policy", "", "with -acl-enabled, what a request that no rule of its token matches gets: allow, or deny when not given")
	f.BoolVar(&o.hashSecrets, "acl-hash-secrets", true, "store only the SHA-256 of token secrets (a SecretID is shown once, at creation); false keeps them readable, as Consul")
	f.StringVar(&o.ACL.AgentToken, "acl-agent-token", "", "token for the server's own agent work and the answers that follow no request's token (DNS)")
	f.StringVar(&o.HTTPSAddr, "https-addr", "", "serve the HTTP API over TLS on this address too (needs -tls-cert-file and -tls-key-file)")
	f.StringVar(&o.TLS.CertFile, "tls-cert-file", "", "PEM certificate for HTTPS, and shown to other servers (kvx tls cert create -server)")
	f.StringVar(&o.TLS.KeyFile, "tls-key-file", "", "PEM private key of -tls-cert-file")
	f.StringVar(&o.TLS.CAFile, "tls-ca-file", "", "PEM CA of servers' and clients' certificates; turns on mutual TLS on the Raft port")
	f.BoolVar(&o.TLS.VerifyIncoming, "tls-verify-incoming", false, "HTTPS clients must show a certificate signed by -tls-ca-file")
	f.IntVar(&o.MaxConnsPerClient, "http-max-conns-per-client", 0, fmt.Sprintf("connections one client IP may hold open on the HTTP(S) API; more are closed at once (default: %d, none with -dev; -1: no cap)", server.DefaultMaxConnsPerClient))
	f.StringVar(&o.dogstatsdAddr, "dogstatsd-addr", "", "send metrics to this dogstatsd agent (host:port)")
	f.IntVar(&o.gcMinHeapMB, "gc-min-heap", 48, "MiB the Go heap may reach before the garbage collector runs: memory traded for CPU while the live data is small (0: Go's rule, a collection each time the heap doubles; GOGC in the environment overrides it)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&o.logJSON, "log-json", false, "log JSON lines instead of text")
	return cmd
}

func runServer(cmd *cobra.Command, o *serverOptions) error {
	// Everything that can be checked without the data dir or the network is
	// checked before anything is opened or bound: a usage error, exit 2.
	dnsCfg, err := o.dns.config(cmd.Flags())
	if err != nil {
		return usageError{err}
	}
	o.DNS, o.DNSNoStale = dnsCfg, !o.dns.allowStale
	o.DNSOptional = dnsCfg != nil && !cmd.Flags().Changed("dns-addr")
	if cmd.Flags().Changed("http-addr") && o.HTTPAddr == "" {
		o.HTTPAddr = server.HTTPDisabled // -http-addr "": HTTPS only
	}
	if err := o.Validate(); err != nil {
		return usageError{err}
	}
	if o.gcMinHeapMB < 0 {
		return usageError{fmt.Errorf("-gc-min-heap %d: want 0 or more MiB", o.gcMinHeapMB)}
	}
	logger, err := newLogger(cmd.ErrOrStderr(), o.logLevel, o.logJSON)
	if err != nil {
		return err
	}
	server.SetGCMinHeap(uint64(o.gcMinHeapMB) << 20)
	opts := o.Options
	opts.ACL.KeepSecrets = !o.hashSecrets
	opts.Logger = logger
	opts.Version = Version
	if o.dogstatsdAddr != "" {
		d, err := metrics.NewDogstatsd(o.dogstatsdAddr, "")
		if err != nil {
			return usageError{err}
		}
		defer d.Close()
		opts.Metrics = d
	}
	// SIGHUP is caught from before the server logs that it started, so that
	// one sent then reloads (later) instead of killing the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	started := time.Now()
	srv, err := server.New(opts)
	if errors.Is(err, server.ErrIdentityMismatch) || errors.Is(err, server.ErrInvalidOptions) {
		return usageError{err} // flags that contradict the data dir
	}
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	go func() {
		for {
			select {
			case <-cmd.Context().Done():
				return
			case <-hup:
				if err := srv.ReloadTLS(); err != nil {
					logger.Error("reload refused: the running certificates stay", "err", err)
				}
			}
		}
	}()
	go func() {
		if err := srv.WaitForCatalog(cmd.Context()); err == nil {
			logger.Info("ready", "node", srv.NodeName(), "http", srv.HTTPAddr(), "https", srv.HTTPSAddr(), "after", time.Since(started).Round(time.Millisecond))
		}
	}()
	return srv.Run(cmd.Context())
}
