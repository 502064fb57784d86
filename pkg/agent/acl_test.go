package agent_test

import (
	"errors"
	"net/http"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/agent"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func is403(err error) bool {
	var se consulapi.StatusError
	return errors.As(err, &se) && se.Code == http.StatusForbidden
}

// An agent syncs and heartbeats with -acl-agent-token; its own endpoints
// check each request's token through the servers, and what it proxies
// carries the request's token.
func TestAgentWithACLs(t *testing.T) {
	srv := startServer(t, servertest.WithACL("deny"))
	mgmt, secret := srv.Bootstrap(t)
	agentToken := servertest.TokenWithRules(t, mgmt, "agent-1", `
node "agent-1" { policy = "write" }
node_prefix "" { policy = "read" }
service_prefix "" { policy = "read" }
service "web" { policy = "write" }
`)
	a := startAgent(t, []string{srv.HTTPAddr()}, func(o *agent.Options) { o.ACLAgentToken = agentToken })
	servertest.Eventually(t, "the agent's node, alive", func() bool {
		c := nodeCheck(t, mgmt, "agent-1", "serfHealth")
		return c != nil && c.Status == consulapi.HealthPassing
	})
	viaAgent := func(token string) *consulapi.Client {
		c, err := client.New(client.Options{Address: a.addr, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	anon := viaAgent("anonymous")
	if err := anon.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "web", Port: 80}); !is403(err) {
		t.Fatalf("anonymous register through the agent: %v, want 403", err)
	}
	writer := viaAgent(servertest.TokenWithRules(t, mgmt, "web-writer", `service "web" { policy = "write" }`))
	if err := writer.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "web", Port: 80}); err != nil {
		t.Fatalf("register web through the agent: %v", err)
	}
	if err := writer.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "db", Port: 81}); !is403(err) {
		t.Fatalf("register db with web rules: %v, want 403", err)
	}
	servertest.Eventually(t, "web synced with the agent token", func() bool {
		svcs, _, err := mgmt.Catalog().Service("web", "", nil)
		return err == nil && len(svcs) == 1 && svcs[0].Node == "agent-1"
	})
	if svcs, err := anon.Agent().Services(); err != nil || len(svcs) != 0 {
		t.Fatalf("anonymous agent services: %v %v, want none", svcs, err)
	}
	if ms, err := anon.Agent().Members(false); err != nil || len(ms) != 0 {
		t.Fatalf("anonymous agent members: %v %v, want none", ms, err)
	}
	if ms, err := viaAgent(secret).Agent().Members(false); err != nil || len(ms) != 2 {
		t.Fatalf("management agent members: %v %v, want the server and the agent", ms, err)
	}
	// Proxied requests carry their own token, not the agent's.
	if _, err := anon.KV().Put(&consulapi.KVPair{Key: "k", Value: []byte("v")}, nil); !is403(err) {
		t.Fatalf("anonymous put through the agent: %v, want 403", err)
	}
	if _, err := viaAgent("").KV().Put(&consulapi.KVPair{Key: "k", Value: []byte("v")}, nil); !is403(err) {
		t.Fatalf("tokenless put through the agent: %v, want 403", err)
	}
	if _, err := viaAgent(secret).KV().Put(&consulapi.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatalf("management put through the agent: %v", err)
	}
}
