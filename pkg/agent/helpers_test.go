package agent_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/agent"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// testAgent is an in-process agent and a client of its HTTP API.
type testAgent struct {
	*agent.Agent
	addr string
	c    *consulapi.Client
	stop func()
}

// startAgent runs an agent against the servers at join until the test
// ends (or stop is called).
func startAgent(t *testing.T, join []string, modify ...func(*agent.Options)) *testAgent {
	t.Helper()
	opts := agent.Options{Join: join, NodeName: "agent-1", HTTPAddr: "127.0.0.1:0", LeaveOnTerminate: true,
		SyncInterval: time.Minute, MinCheckInterval: 20 * time.Millisecond, Advertise: "127.0.0.1"}
	for _, m := range modify {
		m(&opts)
	}
	a, err := agent.New(opts)
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("agent did not stop")
		}
	}
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	addr, err := a.HTTPAddr(wctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return &testAgent{Agent: a, addr: addr, c: c, stop: stop}
}

func startServer(t *testing.T, modify ...func(*server.Options)) *servertest.Server {
	return servertest.Start(t, modify...)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// nodeCheck returns a check of a node from the catalog, nil if missing.
func nodeCheck(t *testing.T, c *consulapi.Client, node, id string) *consulapi.HealthCheck {
	t.Helper()
	checks, _, err := c.Health().Node(node, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range checks {
		if ck.CheckID == id {
			return ck
		}
	}
	return nil
}

func passing(t *testing.T, c *consulapi.Client, service string) []*consulapi.ServiceEntry {
	t.Helper()
	e, _, err := c.Health().Service(service, "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
