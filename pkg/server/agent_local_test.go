package server_test

import (
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// passingInstances counts the ?passing instances of a service.
func passingInstances(t *testing.T, c *consulapi.Client, service string) int {
	t.Helper()
	e, _, err := c.Health().Service(service, "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(e)
}

func testAgentTTL(t *testing.T, c *consulapi.Client, node string) {
	t.Helper()
	a := c.Agent()
	err := a.ServiceRegister(&consulapi.AgentServiceRegistration{ID: "api-1", Name: "api", Port: 9000, Tags: []string{"v1"},
		Check: &consulapi.AgentServiceCheck{TTL: "30s"}})
	if err != nil {
		t.Fatal(err)
	}
	services, err := a.Services()
	if err != nil || services["api-1"] == nil || services["api-1"].Port != 9000 || len(services) != 1 {
		t.Fatalf("agent services = %+v, %v; want api-1 alone (not the consul service)", services, err)
	}
	checks, err := a.Checks()
	if err != nil || len(checks) != 1 || checks["service:api-1"].Status != "critical" || checks["service:api-1"].Node != node {
		t.Fatalf("agent checks = %+v, %v; want service:api-1 critical on %s", checks, err, node)
	}
	if n := passingInstances(t, c, "api"); n != 0 {
		t.Fatalf("a TTL check that never passed: %d passing, want 0", n)
	}
	if err := a.PassTTL("service:api-1", "ok"); err != nil {
		t.Fatal(err)
	}
	e, _, _ := c.Health().Service("api", "", true, nil)
	if len(e) != 1 || e[0].Node.Node != node || e[0].Checks[1].Output != "ok" {
		t.Fatalf("api after pass = %+v", e)
	}
	if err := a.UpdateTTL("service:api-1", "slow", "warn"); err != nil {
		t.Fatal(err)
	}
	if n := passingInstances(t, c, "api"); n != 0 {
		t.Fatalf("api after warn: %d passing, want 0", n)
	}
	if err := a.PassTTL("nope", ""); err == nil || !strings.Contains(err.Error(), `Unknown check ID "nope"`) {
		t.Fatalf("pass of an unknown check: %v", err)
	}
	if err := a.ServiceDeregister("api-1"); err != nil {
		t.Fatal(err)
	}
	if sns, _, _ := c.Catalog().Service("api", "", nil); len(sns) != 0 {
		t.Fatalf("api after deregister = %+v", sns)
	}
}

func TestAgentServiceWithTTLCheck(t *testing.T) {
	srv := servertest.Start(t)
	testAgentTTL(t, srv.Client, srv.NodeName())

	// A TTL that runs out turns the check critical.
	a := srv.Client.Agent()
	if err := a.CheckRegister(&consulapi.AgentCheckRegistration{ID: "beat", Name: "heartbeat",
		AgentServiceCheck: consulapi.AgentServiceCheck{TTL: "50ms", Status: "passing"}}); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the TTL check to expire", func() bool {
		checks, _, err := srv.Client.Health().Node(srv.NodeName(), nil)
		for _, c := range checks {
			if c.CheckID == "beat" {
				return err == nil && c.Status == "critical" && c.Output == "TTL expired"
			}
		}
		return false
	})
	if err := a.CheckDeregister("beat"); err != nil {
		t.Fatal(err)
	}
	if checks, _, _ := srv.Client.Health().Node(srv.NodeName(), nil); len(checks) != 1 {
		t.Fatalf("checks after deregister = %+v; want serfHealth alone", checks)
	}
}

func TestAgentOfAFollowerWritesThroughTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	srvs, clients := cluster(t)
	for i, s := range srvs {
		if !s.IsLeader() {
			testAgentTTL(t, clients[i], s.NodeName())
			return
		}
	}
	t.Fatal("no follower")
}
