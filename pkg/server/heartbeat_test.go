package server_test

import (
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func serfHealth(t *testing.T, c *consulapi.Client, node string) (string, uint64) {
	t.Helper()
	checks, meta, err := c.Health().Node(node, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range checks {
		if ch.CheckID == "serfHealth" {
			return ch.Status, meta.LastIndex
		}
	}
	return "", meta.LastIndex
}

func TestSilentAgentTurnsCriticalAndComesBack(t *testing.T) {
	srv := servertest.Start(t, func(o *server.Options) { o.NodeTimeout = 300 * time.Millisecond })
	c := srv.Client
	beat := func() (int, string) {
		code, body, _ := rawDo(t, "PUT", "http://"+srv.HTTPAddr()+"/v1/kvx/heartbeat/agent1", nil)
		return code, body
	}
	if code, body := beat(); code != 404 || !strings.Contains(body, "Unknown node") {
		t.Fatalf("heartbeat of an unregistered node = %d %q, want 404", code, body)
	}
	mustRegister(t, c, instance("agent1", "10.0.0.7", "web", "web-1", "passing"))
	if code, body := beat(); code != 200 || !strings.Contains(body, `"NodeTimeout":"300ms"`) {
		t.Fatalf("heartbeat = %d %q", code, body)
	}
	status, idx := serfHealth(t, c, "agent1")
	if status != "passing" || passingInstances(t, c, "web") != 1 {
		t.Fatalf("after the first heartbeat: serfHealth %q, want passing with web passing", status)
	}
	// Heartbeats within the timeout write nothing.
	for range 5 {
		beat()
	}
	if _, again := serfHealth(t, c, "agent1"); again != idx {
		t.Fatalf("heartbeats moved the node's index from %d to %d: a Raft write each", idx, again)
	}
	// Silent: critical, and out of ?passing, within the bound.
	servertest.Eventually(t, "the silent node to turn critical", func() bool {
		st, _ := serfHealth(t, c, "agent1")
		return st == "critical"
	})
	if n := passingInstances(t, c, "web"); n != 0 {
		t.Fatalf("a silent node's service is still passing (%d)", n)
	}
	// Back.
	beat()
	if st, _ := serfHealth(t, c, "agent1"); st != "passing" || passingInstances(t, c, "web") != 1 {
		t.Fatalf("after the agent came back: serfHealth %q", st)
	}
	// The server's own node is not tracked.
	if st, _ := serfHealth(t, c, srv.NodeName()); st != "passing" {
		t.Fatalf("the server's own serfHealth = %q", st)
	}
}
