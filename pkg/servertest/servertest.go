package servertest

import (
	"context"
	"net"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
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
	if err := srv.WaitForLeader(ctx); err != nil {
		tb.Fatalf("server: %v", err)
	}
	c, err := client.New(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		tb.Fatalf("client: %v", err)
	}
	return &Server{Server: srv, Client: c}
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a node that must come back on the same address after a restart.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
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
