package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// An agent joined to a three-server cluster keeps working when the server
// it talks to stops: its registrations, heartbeats and forwarded requests
// go to the others.
func TestAgentSurvivesItsServerStopping(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	var srvs []*server.Server
	var joins []string
	first := ""
	for i := 1; i <= 3; i++ {
		opts := server.Options{NodeName: fmt.Sprintf("s%d", i), DataDir: t.TempDir(), BootstrapExpect: 3,
			HeartbeatTimeout: 300 * time.Millisecond, HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", NodeTimeout: 2 * time.Second}
		if first != "" {
			opts.Join = []string{first}
		}
		s, err := server.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if first == "" {
			first = s.RaftAddr()
		}
		srvs = append(srvs, s)
		joins = append(joins, s.HTTPAddr())
	}
	for _, s := range srvs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.WaitForCatalog(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	a, err := New(Options{Join: joins, NodeName: "agent-c", HTTPAddr: "127.0.0.1:0", Advertise: "127.0.0.1", LeaveOnTerminate: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	addr, err := a.HTTPAddr(wctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "before", Port: 1}); err != nil {
		t.Fatal(err)
	}
	serf := func(c *consulapi.Client) *consulapi.HealthCheck {
		checks, _, err := c.Health().Node("agent-c", nil)
		if err != nil {
			return nil
		}
		for _, ck := range checks {
			if ck.CheckID == "serfHealth" {
				return ck
			}
		}
		return nil
	}
	var before *consulapi.HealthCheck
	servertest.Eventually(t, "serfHealth passing", func() bool {
		before = serf(c)
		return before != nil && before.Status == "passing"
	})
	// Stop the server the agent talks to.
	used := int(a.srv.cur.Load())
	if err := srvs[used].Close(); err != nil {
		t.Fatal(err)
	}
	other, err := client.New(client.Options{Address: joins[(used+1)%3]})
	if err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "a registration after the stop reaching the catalog", func() bool {
		if err := c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "after", Port: 2}); err != nil {
			return false
		}
		n, _, err := other.Catalog().Node("agent-c", nil)
		return err == nil && n != nil && n.Services["after"] != nil && n.Services["before"] != nil
	})
	if int(a.srv.cur.Load()) == used {
		t.Fatal("the agent still uses the stopped server")
	}
	servertest.Eventually(t, "KV through the agent", func() bool {
		_, err := c.KV().Put(&consulapi.KVPair{Key: "k", Value: []byte("v")}, nil)
		return err == nil
	})
	// Heartbeats go on, for longer than the node timeout: the node stays
	// passing.
	beats := a.beats.Load()
	servertest.Eventually(t, "four heartbeats after the stop", func() bool { return a.beats.Load() >= beats+4 })
	if after := serf(other); after == nil || after.Status != "passing" || after.ModifyIndex != before.ModifyIndex {
		t.Fatalf("serfHealth after the stop = %+v; want it untouched since %d", after, before.ModifyIndex)
	}
}
