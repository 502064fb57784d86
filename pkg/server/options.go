package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	kvxdns "github.com/kvxproject/kvx/pkg/dns"
	"github.com/kvxproject/kvx/pkg/metrics"
)

// Options configure a server. The zero value of a field means "not given":
// for a durable node, the value remembered in its data dir (see identity.go),
// else the default.
type Options struct {
	NodeName   string // default: the host name
	Datacenter string // default "dc1"
	Version    string // reported by /v1/agent/self
	// ACL turns on access control (see acl.go); its zero value leaves it off.
	ACL ACLOptions

	// Dev runs one node entirely in memory with fast Raft timers: nothing is
	// written to disk and it is ready in well under a second.
	Dev bool
	// DataDir holds the Raft log (raft-wal), snapshots and the node's
	// identity. Required unless Dev.
	DataDir string

	HTTPAddr string // default "127.0.0.1:8500"; port 0 picks a free port; HTTPDisabled: none
	RaftAddr string // default "127.0.0.1:8300"; Raft, forwarding and join, on one port

	// HTTPSAddr serves the same API over TLS ("" for none); it needs
	// TLS.CertFile and TLS.KeyFile.
	HTTPSAddr string
	// TLS: certificates for HTTPS, and mutual TLS on the Raft port when
	// TLS.CAFile is set (see tls.go).
	TLS TLSOptions
	// MaxConnsPerClient caps the HTTP(S) connections one client IP may
	// hold open (Consul's http_max_conns_per_client); 0 for
	// DefaultMaxConnsPerClient (no cap with Dev, which a laptop's benchmarks
	// and demos load with more connections from one address), negative for
	// no cap.
	MaxConnsPerClient int

	// BootstrapExpect is how many servers form the first cluster. With 0 or 1
	// and no Join addresses, the node bootstraps alone.
	BootstrapExpect int
	// Join lists Raft addresses of other servers to discover at start.
	Join []string

	// HeartbeatTimeout drives Raft's heartbeat, election and lease timers.
	// Default 1s. A server that is its configuration's only voter stands for
	// election at once (raft_alone.go), so -dev starts in milliseconds anyway.
	HeartbeatTimeout time.Duration
	// SnapshotThreshold, SnapshotInterval and TrailingLogs tune when Raft
	// snapshots and truncates its log; 0 keeps the defaults: hashicorp/raft's
	// for a durable node (8192 entries, checked every 120-240 s, 10240 kept),
	// and for Dev, whose log lives in memory, devSnapshotThreshold,
	// devSnapshotInterval and devTrailingLogs.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// TombstoneTTL is how long deleted keys keep their tombstones (default 15m).
	TombstoneTTL time.Duration
	// NodeTimeout is how long the leader waits for an agent's heartbeat
	// before it marks the agent's node's serfHealth critical (default 30s).
	NodeTimeout time.Duration
	// SessionTTLMin is the smallest session TTL accepted (Consul's
	// session_ttl_min, default 10s).
	SessionTTLMin time.Duration

	// DNS, when not nil, serves the DNS interface (package pkg/dns) on
	// DNS.Addr from this node's state; its Datacenter is the server's.
	DNS *kvxdns.Config
	// DNSNoStale (-dns-allow-stale=false) makes a follower answer DNS only
	// while it is in contact with its leader and has applied everything the
	// leader committed; it answers SERVFAIL otherwise.
	DNSNoStale bool
	// DNSOptional: when DNS.Addr is in use, log a warning and serve without
	// DNS (kvx server's default address, so that several servers on one
	// host start).
	DNSOptional bool

	Logger  *slog.Logger // nil discards
	Metrics metrics.Sink // nil discards
}

// Defaults of a server whose options and data dir say nothing.
const (
	DefaultDatacenter = "dc1"
	DefaultHTTPAddr   = "127.0.0.1:8500"
	DefaultRaftAddr   = "127.0.0.1:8300"
	// DefaultNodeTimeout is how long an agent may miss heartbeats before its
	// node turns critical.
	DefaultNodeTimeout = 30 * time.Second
	// DefaultMaxConnsPerClient is Consul's http_max_conns_per_client.
	DefaultMaxConnsPerClient = 200
	// HTTPDisabled as HTTPAddr serves no plain HTTP (with -https-addr).
	HTTPDisabled = "off"
	// DefaultSessionTTLMin is the smallest session TTL, as Consul's.
	DefaultSessionTTLMin = 10 * time.Second
)

// With -dev the Raft log is a map in memory that only a snapshot truncates,
// so -dev snapshots far more often than hashicorp/raft's defaults (8192
// entries, checked every 120-240 s): at 25k writes/s those let the log grow
// by millions of entries, about 1.5 KB of RSS each. A -dev snapshot is a
// copy of the in-memory store, and there are no followers to catch up.
const (
	devSnapshotThreshold = 4096
	devSnapshotInterval  = 200 * time.Millisecond
	devTrailingLogs      = 1024
)

// ErrInvalidOptions is wrapped by every error of Options.Validate: options
// that can never work, whatever the machine or the data dir hold.
var ErrInvalidOptions = errors.New("invalid server options")

type optionsError struct{ msg string }

func (e *optionsError) Error() string        { return e.msg }
func (e *optionsError) Is(target error) bool { return target == ErrInvalidOptions }

func invalid(format string, args ...any) error {
	return &optionsError{msg: fmt.Sprintf(format, args...)}
}

// Validate checks the options alone, before anything is opened or bound.
// Its errors wrap ErrInvalidOptions.
func (o *Options) Validate() error {
	switch {
	case !o.Dev && o.DataDir == "":
		return invalid("a data dir is required: give -data-dir DIR, or -dev for a node in memory")
	case o.Dev && o.DataDir != "":
		return invalid("-dev keeps everything in memory: drop -data-dir %s", o.DataDir)
	case o.Dev && (o.BootstrapExpect > 1 || len(o.Join) > 0):
		return invalid("-dev runs one node alone: drop -bootstrap-expect and -join")
	case o.BootstrapExpect < 0:
		return invalid("-bootstrap-expect %d: must be 0 or more", o.BootstrapExpect)
	case o.HeartbeatTimeout < 0:
		return invalid("-raft-timeout %s: must be positive", o.HeartbeatTimeout)
	case o.SnapshotInterval < 0 || o.TombstoneTTL < 0:
		return invalid("snapshot interval %s, tombstone TTL %s: must not be negative", o.SnapshotInterval, o.TombstoneTTL)
	case o.NodeTimeout < 0:
		return invalid("-node-timeout %s: must be positive", o.NodeTimeout)
	case o.ACL.DefaultPolicy != "" && o.ACL.DefaultPolicy != "allow" && o.ACL.DefaultPolicy != "deny":
		return invalid("-acl-default-policy %q: want allow or deny", o.ACL.DefaultPolicy)
	case o.SessionTTLMin < 0 || o.SessionTTLMin > 24*time.Hour:
		return invalid("-session-ttl-min %s: must be between 0 and 24h", o.SessionTTLMin)
	}
	if o.HTTPAddr != "" && o.HTTPAddr != HTTPDisabled {
		if err := checkAddr("-http-addr", o.HTTPAddr, true); err != nil {
			return err
		}
	}
	if err := o.validateTLS(); err != nil {
		return err
	}
	if o.RaftAddr != "" {
		if err := checkAddr("-raft-addr", o.RaftAddr, true); err != nil {
			return err
		}
		if err := checkRoutable(o.RaftAddr); err != nil {
			return err
		}
	}
	if o.DNS != nil {
		c := *o.DNS
		if err := c.Validate(); err != nil {
			return invalid("%v", err)
		}
	}
	for _, j := range o.Join {
		if err := checkAddr("-join", j, false); err != nil {
			return err
		}
	}
	return nil
}

// checkAddr refuses what net.Listen or net.Dial could never take: no port,
// a port that is not a number from 0 (only when listening) to 65535.
func checkAddr(flag, addr string, listen bool) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalid("%s %q: want host:port (%v)", flag, addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return invalid("%s %q: port %q is not a number from 0 to 65535", flag, addr, port)
	}
	if n == 0 && !listen {
		return invalid("%s %q: port 0 cannot be dialed", flag, addr)
	}
	return nil
}

// checkRoutable refuses a Raft address other servers could not dial.
func checkRoutable(addr string) error {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return invalid("-raft-addr %q: give a routable address (not %q), other servers dial it", addr, host)
	}
	return nil
}

// withDefaults fills what neither the options nor the data dir gave. It runs
// after resolveIdentity.
func (o *Options) withDefaults() {
	if o.Datacenter == "" {
		o.Datacenter = DefaultDatacenter
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	if o.RaftAddr == "" {
		o.RaftAddr = DefaultRaftAddr
	}
	if o.HeartbeatTimeout == 0 {
		o.HeartbeatTimeout = time.Second
	}
	if o.Dev {
		if o.SnapshotThreshold == 0 {
			o.SnapshotThreshold = devSnapshotThreshold
		}
		if o.SnapshotInterval == 0 {
			o.SnapshotInterval = devSnapshotInterval
		}
		if o.TrailingLogs == 0 {
			o.TrailingLogs = devTrailingLogs
		}
	}
	if o.TombstoneTTL == 0 {
		o.TombstoneTTL = 15 * time.Minute
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = DefaultNodeTimeout
	}
	if o.SessionTTLMin == 0 {
		o.SessionTTLMin = DefaultSessionTTLMin
	}
	if o.MaxConnsPerClient == 0 {
		o.MaxConnsPerClient = DefaultMaxConnsPerClient
		if o.Dev {
			o.MaxConnsPerClient = -1
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Discard
	}
}
