package servertest

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	kvxdns "github.com/kvxproject/kvx/pkg/dns"
	"github.com/kvxproject/kvx/pkg/server"
)

// Server is a running test server.
type Server struct {
	*server.Server
	Client *consulapi.Client
}

// Start runs a one-node dev server (in memory) until the test ends. modify,
// if given, may change the options before the server starts.
func Start(tb testing.TB, modify ...func(*server.Options)) *Server {
	tb.Helper()
	opts := server.Options{
		Dev:      true,
		NodeName: "kvx-test",
		HTTPAddr: "127.0.0.1:0",
		RaftAddr: "127.0.0.1:0",
	}
	for _, m := range modify {
		m(&opts)
	}
	srv, err := server.New(opts)
	if err != nil {
		tb.Fatalf("start server: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("stop server: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.WaitForCatalog(ctx); err != nil {
		tb.Fatalf("server: %v", err)
	}
	c, err := client.New(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		tb.Fatalf("client: %v", err)
	}
	return &Server{Server: srv, Client: c}
}

// WithDNS is an option of Start: the server also answers DNS on a free
// loopback port (UDP and TCP, Server.DNSAddr), with the configuration that
// modify leaves.
func WithDNS(modify ...func(*kvxdns.Config)) func(*server.Options) {
	return func(o *server.Options) {
		cfg := &kvxdns.Config{Addr: "127.0.0.1:0"}
		for _, m := range modify {
			m(cfg)
		}
		o.DNS = cfg
	}
}

// handedOut holds the addresses FreeAddr returned.
var handedOut sync.Map

// FreeAddr returns a free loopback address for a node that must come back on
// the same address after a restart. The port is picked at random below the
// kernel's ephemeral range (32768 and up on Linux), so that while the node is
// down the kernel cannot hand its port to another test's server bound to
// port 0: Raft traffic for the stopped node would reach a stranger. An
// address is handed out once per process, so the nodes of one test never
// get the same port.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.N(12000)))
		if _, dup := handedOut.LoadOrStore(addr, true); dup {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: try another
		}
		ln.Close()
		return addr
	}
	tb.Fatal("no free port in 20000-31999")
	return ""
}

// Eventually polls cond until it holds, or fails the test after a minute.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Buffer is a bytes buffer safe for concurrent use: a place for a server's
// or a command's log that a test reads while it is being written.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }

// String returns everything written so far.
func (b *Buffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// WithACL is an option of Start: ACLs enforced with this default policy
// ("allow" or "deny").
func WithACL(defaultPolicy string) func(*server.Options) {
	return func(o *server.Options) {
		o.ACL.Enabled = true
		o.ACL.DefaultPolicy = defaultPolicy
	}
}

// Bootstrap bootstraps the server's ACLs and returns a client with the
// management token, and its SecretID.
func (s *Server) Bootstrap(tb testing.TB) (*consulapi.Client, string) {
	tb.Helper()
	tok, _, err := s.Client.ACL().Bootstrap()
	if err != nil {
		tb.Fatalf("acl bootstrap: %v", err)
	}
	return s.ClientWithToken(tb, tok.SecretID), tok.SecretID
}

// ClientWithToken returns a client of the server that sends this token.
func (s *Server) ClientWithToken(tb testing.TB, token string) *consulapi.Client {
	tb.Helper()
	c, err := client.New(client.Options{Address: s.HTTPAddr(), Token: token})
	if err != nil {
		tb.Fatalf("client: %v", err)
	}
	return c
}

// TokenWithRules creates a policy with these rules and a token with it,
// through the management client mgmt, and returns the token's SecretID.
func TokenWithRules(tb testing.TB, mgmt *consulapi.Client, name, rules string) string {
	tb.Helper()
	p, _, err := mgmt.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: name, Rules: rules}, nil)
	if err != nil {
		tb.Fatalf("create policy %s: %v", name, err)
	}
	t, _, err := mgmt.ACL().TokenCreate(&consulapi.ACLToken{Description: name,
		Policies: []*consulapi.ACLTokenPolicyLink{{ID: p.ID}}}, nil)
	if err != nil {
		tb.Fatalf("create token %s: %v", name, err)
	}
	return t.SecretID
}
