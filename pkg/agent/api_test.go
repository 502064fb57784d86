package agent_test

import (
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// The /v1/agent/* endpoints through the Go client, against an agent and
// against a server's own node: one implementation, the same answers.
func TestAgentEndpoints(t *testing.T) {
	srv := startServer(t)
	a := startAgent(t, []string{srv.HTTPAddr()})
	for _, tc := range []struct {
		name, node string
		c          *consulapi.Client
	}{{"agent", "agent-1", a.c}, {"server", srv.NodeName(), srv.Client}} {
		t.Run(tc.name, func(t *testing.T) { testAgentEndpoints(t, tc.c, srv.Client, tc.node) })
	}
}

func testAgentEndpoints(t *testing.T, c, cat *consulapi.Client, node string) {
	ag := c.Agent()
	err := ag.ServiceRegister(&consulapi.AgentServiceRegistration{ID: "api-1", Name: "api", Port: 9000, Tags: []string{"v1"},
		Meta: map[string]string{"team": "core"}, Check: &consulapi.AgentServiceCheck{TTL: "1h"}})
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := ag.Services()
	if err != nil || len(svcs) != 1 || svcs["api-1"].Port != 9000 || svcs["api-1"].Meta["team"] != "core" || svcs["api-1"].Datacenter != "dc1" {
		t.Fatalf("services = %+v, %v", svcs, err)
	}
	if f, err := ag.ServicesWithFilter(`Service == "nope"`); err != nil || len(f) != 0 {
		t.Fatalf("services filtered out = %v, %v", f, err)
	}
	if f, err := ag.ServicesWithFilter(`"v1" in Tags and Meta.team == "core"`); err != nil || len(f) != 1 {
		t.Fatalf("services filtered in = %v, %v", f, err)
	}
	if _, err := ag.ServicesWithFilter(`Service ==`); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a bad filter: %v", err)
	}
	if f, err := ag.ChecksWithFilter(`Status == "critical"`); err != nil || len(f) != 1 {
		t.Fatalf("critical checks = %v, %v", f, err)
	}
	one, _, err := ag.Service("api-1", nil)
	if err != nil || one.Service != "api" || one.ContentHash == "" {
		t.Fatalf("service api-1 = %+v, %v", one, err)
	}
	if _, _, err := ag.Service("nope", nil); err == nil {
		t.Fatal("an unknown service: no error")
	}
	// A new TTL check is critical: not passing, and the agent says so.
	if e := passing(t, cat, "api"); len(e) != 0 {
		t.Fatalf("passing before the first TTL update: %d", len(e))
	}
	status, _, err := ag.AgentHealthServiceByName("api")
	if err != nil || status != "critical" {
		t.Fatalf("agent health = %q, %v", status, err)
	}
	if err := ag.PassTTL("service:api-1", "all good"); err != nil {
		t.Fatal(err)
	}
	// The PUT answers once the catalog has it.
	e := passing(t, cat, "api")
	if len(e) != 1 || e[0].Node.Node != node || nodeCheck(t, cat, node, "service:api-1").Output != "all good" {
		t.Fatalf("api after pass = %+v", e)
	}
	if status, infos, err := ag.AgentHealthServiceByName("api"); err != nil || status != "passing" || len(infos) != 1 || infos[0].Service.ID != "api-1" {
		t.Fatalf("agent health after pass = %q %+v %v", status, infos, err)
	}
	if err := ag.WarnTTL("service:api-1", "slow"); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := ag.AgentHealthServiceByName("api"); status != "warning" {
		t.Fatalf("agent health after warn = %q", status)
	}
	if err := ag.UpdateTTL("service:api-1", "back", "pass"); err != nil {
		t.Fatal(err)
	}
	checks, err := ag.Checks()
	if err != nil || checks["service:api-1"].Status != "passing" || checks["service:api-1"].Output != "back" || checks["service:api-1"].Node != node {
		t.Fatalf("checks = %+v, %v", checks, err)
	}

	// Service maintenance: a critical check in the catalog, out of passing.
	if err := ag.EnableServiceMaintenance("api-1", "deploy"); err != nil {
		t.Fatal(err)
	}
	mc := nodeCheck(t, cat, node, "_service_maintenance:api-1")
	if mc == nil || mc.Status != "critical" || mc.Notes != "deploy" || len(passing(t, cat, "api")) != 0 {
		t.Fatalf("maintenance check = %+v", mc)
	}
	if err := ag.DisableServiceMaintenance("api-1"); err != nil {
		t.Fatal(err)
	}
	if nodeCheck(t, cat, node, "_service_maintenance:api-1") != nil || len(passing(t, cat, "api")) != 1 {
		t.Fatal("service maintenance not lifted")
	}
	if err := ag.EnableServiceMaintenance("nope", ""); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("maintenance of an unknown service: %v", err)
	}
	if err := ag.EnableNodeMaintenance(""); err != nil {
		t.Fatal(err)
	}
	if mc := nodeCheck(t, cat, node, "_node_maintenance"); mc == nil || !strings.Contains(mc.Notes, "no reason was provided") || len(passing(t, cat, "api")) != 0 {
		t.Fatalf("node maintenance check = %+v", mc)
	}
	if err := ag.DisableNodeMaintenance(); err != nil {
		t.Fatal(err)
	}

	// A node-level check, and bad input.
	if err := ag.CheckRegister(&consulapi.AgentCheckRegistration{ID: "beat", Name: "beat",
		AgentServiceCheck: consulapi.AgentServiceCheck{TTL: "1h", Status: "passing"}}); err != nil {
		t.Fatal(err)
	}
	if c := nodeCheck(t, cat, node, "beat"); c == nil || c.Status != "passing" {
		t.Fatalf("beat = %+v", c)
	}
	for _, bad := range []struct {
		reg  consulapi.AgentCheckRegistration
		want string
	}{
		{consulapi.AgentCheckRegistration{Name: "x", ServiceID: "nope", AgentServiceCheck: consulapi.AgentServiceCheck{TTL: "1h"}}, `ServiceID "nope" does not exist`},
		{consulapi.AgentCheckRegistration{Name: "x", AgentServiceCheck: consulapi.AgentServiceCheck{TTL: "1h", Status: "fine"}}, "Bad check status"},
		{consulapi.AgentCheckRegistration{AgentServiceCheck: consulapi.AgentServiceCheck{TTL: "1h"}}, "Missing check name"},
		{consulapi.AgentCheckRegistration{Name: "x", AgentServiceCheck: consulapi.AgentServiceCheck{Args: []string{"true"}, Interval: "1s"}}, "script checks are disabled"},
		{consulapi.AgentCheckRegistration{Name: "x", AgentServiceCheck: consulapi.AgentServiceCheck{HTTP: "http://x", Interval: "soon"}}, "interval"},
	} {
		err := ag.CheckRegister(&bad.reg)
		if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(bad.want)) {
			t.Errorf("register %+v: %v; want a 400 with %q", bad.reg, err, bad.want)
		}
	}
	if err := ag.ServiceRegister(&consulapi.AgentServiceRegistration{Port: 1}); err == nil || !strings.Contains(err.Error(), "Missing service name") {
		t.Errorf("a service without a name: %v", err)
	}
	if err := ag.PassTTL("nope", ""); err == nil || !strings.Contains(err.Error(), `Unknown check ID "nope"`) {
		t.Errorf("pass of an unknown check: %v", err)
	}
	if err := ag.ServiceDeregister("nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("deregister of an unknown service: %v", err)
	}

	if err := ag.CheckDeregister("beat"); err != nil {
		t.Fatal(err)
	}
	if err := ag.ServiceDeregister("api-1"); err != nil {
		t.Fatal(err)
	}
	if sns, _, _ := cat.Catalog().Service("api", "", nil); len(sns) != 0 || nodeCheck(t, cat, node, "beat") != nil {
		t.Fatalf("api after deregister = %+v", sns)
	}
	if status, _, err := ag.AgentHealthServiceByName("api"); err != nil || status != "critical" {
		t.Fatalf("agent health of no instance = %q, %v", status, err)
	}
	servertest.Eventually(t, "no local services", func() bool {
		svcs, err := ag.Services()
		return err == nil && len(svcs) == 0
	})
}
