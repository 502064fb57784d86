package server_test

import (
	"net/http"
	"slices"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

func register(t *testing.T, c *consulapi.Client, node, service string) {
	t.Helper()
	reg := &consulapi.CatalogRegistration{Node: node, Address: "10.0.0.1",
		Service: &consulapi.AgentService{ID: service, Service: service, Port: 80},
		Checks:  consulapi.HealthChecks{{Node: node, CheckID: "svc:" + service, Name: service, Status: consulapi.HealthPassing, ServiceID: service}}}
	if _, err := c.Catalog().Register(reg, nil); err != nil {
		t.Fatalf("register %s/%s: %v", node, service, err)
	}
}

func TestACLCatalogAndHealthFilteredByServiceRules(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	register(t, mgmt, "n1", "web")
	register(t, mgmt, "n1", "db")
	c := srv.ClientWithToken(t, servertest.TokenWithRules(t, mgmt, "web-reader", `
service "web" { policy = "read" }
node_prefix "n" { policy = "read" }
`))
	services, meta, err := c.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := services["web"]; !ok || len(services) != 1 || !meta.ResultsFilteredByACLs {
		t.Fatalf("services: %v, filtered %v", services, meta.ResultsFilteredByACLs)
	}
	db, meta, err := c.Catalog().Service("db", "", nil)
	if err != nil || len(db) != 0 || !meta.ResultsFilteredByACLs {
		t.Fatalf("catalog service db: %v %v filtered %v", db, err, meta.ResultsFilteredByACLs)
	}
	web, meta, err := c.Catalog().Service("web", "", nil)
	if err != nil || len(web) != 1 || meta.ResultsFilteredByACLs {
		t.Fatalf("catalog service web: %v %v filtered %v", web, err, meta.ResultsFilteredByACLs)
	}
	hdb, meta, err := c.Health().Service("db", "", false, nil)
	if err != nil || len(hdb) != 0 || !meta.ResultsFilteredByACLs {
		t.Fatalf("health service db: %v %v filtered %v", hdb, err, meta.ResultsFilteredByACLs)
	}
	// A blocking query on db, answered from the shared cache for others,
	// is filtered for this token too.
	hdb, _, err = c.Health().Service("db", "", false, &consulapi.QueryOptions{WaitIndex: 1})
	if err != nil || len(hdb) != 0 {
		t.Fatalf("blocking health service db: %v %v", hdb, err)
	}
	if all, _, err := mgmt.Health().Service("db", "", false, &consulapi.QueryOptions{WaitIndex: 1}); err != nil || len(all) != 1 {
		t.Fatalf("management health service db: %v %v", all, err)
	}
	checks, meta, err := c.Health().State(consulapi.HealthAny, nil)
	if err != nil || !meta.ResultsFilteredByACLs {
		t.Fatalf("health state: %v filtered %v", err, meta.ResultsFilteredByACLs)
	}
	for _, ch := range checks {
		if ch.ServiceName == "db" || ch.Node != "n1" && ch.ServiceName == "" && ch.Node[0] != 'n' {
			t.Fatalf("health state shows %s/%s", ch.Node, ch.CheckID)
		}
	}
	nodes, meta, err := c.Catalog().Nodes(nil)
	if err != nil || !slices.ContainsFunc(nodes, func(n *consulapi.Node) bool { return n.Node == "n1" }) {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	for _, n := range nodes {
		if n.Node[0] != 'n' {
			t.Fatalf("node %s listed", n.Node)
		}
	}
	if !meta.ResultsFilteredByACLs { // the server's own node, kvx-test
		t.Fatal("nodes not marked filtered")
	}
	// Writes: reading web is not writing it.
	reg := &consulapi.CatalogRegistration{Node: "n1", Address: "10.0.0.1", Service: &consulapi.AgentService{ID: "web", Service: "web", Port: 81}}
	_, err = c.Catalog().Register(reg, nil)
	denied(t, "register with read rules", err)
	writer := srv.ClientWithToken(t, servertest.TokenWithRules(t, mgmt, "web-writer", `service "web" { policy = "write" }`))
	if _, err := writer.Catalog().Register(reg, nil); err != nil {
		t.Fatalf("register web on an existing node with service write: %v", err)
	}
	reg.Service = &consulapi.AgentService{ID: "db", Service: "db", Port: 81}
	_, err = writer.Catalog().Register(reg, nil)
	denied(t, "register db with web rules", err)
	_, err = writer.Catalog().Register(&consulapi.CatalogRegistration{Node: "n9", Address: "10.0.0.9",
		Service: &consulapi.AgentService{ID: "web", Service: "web"}}, nil)
	denied(t, "register a new node without node write", err)
	_, err = writer.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: "n1", ServiceID: "db"}, nil)
	denied(t, "deregister db", err)
	if _, err := writer.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: "n1", ServiceID: "web"}, nil); err != nil {
		t.Fatalf("deregister web: %v", err)
	}
}

func TestACLSessionsAndEvents(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	node := srv.NodeName()
	locker := servertest.TokenWithRules(t, mgmt, "locker", `
session "`+node+`" { policy = "write" }
key_prefix "lock/" { policy = "write" }
event "deploy" { policy = "write" }
`)
	c := srv.ClientWithToken(t, locker)
	id, _, err := c.Session().Create(&consulapi.SessionEntry{Node: node, Checks: []string{}}, nil)
	if err != nil {
		t.Fatalf("session on its node: %v", err)
	}
	_, _, err = c.Session().Create(&consulapi.SessionEntry{Node: "other", Checks: []string{}}, nil)
	denied(t, "session on another node", err)
	if ok, _, err := c.KV().Acquire(&consulapi.KVPair{Key: "lock/a", Session: id}, nil); err != nil || !ok {
		t.Fatalf("acquire lock/a: %v %v", ok, err)
	}
	_, _, err = c.KV().Acquire(&consulapi.KVPair{Key: "other/a", Session: id}, nil)
	denied(t, "acquire outside the key rules", err)
	ro := srv.ClientWithToken(t, servertest.TokenWithRules(t, mgmt, "kv-only", `key_prefix "" { policy = "read" }`))
	list, meta, err := ro.Session().List(nil)
	if err != nil || len(list) != 0 || !meta.ResultsFilteredByACLs {
		t.Fatalf("session list without session read: %v %v filtered %v", list, err, meta.ResultsFilteredByACLs)
	}
	if mine, _, err := c.Session().List(nil); err != nil || len(mine) != 1 {
		t.Fatalf("session list with session write: %v %v", mine, err)
	}
	_, err = ro.Session().Destroy(id, nil)
	denied(t, "destroy without session write", err)
	_, _, err = ro.Session().Renew(id, nil)
	denied(t, "renew without session write", err)
	_, _, err = ro.Session().Create(&consulapi.SessionEntry{Node: node, Checks: []string{}}, nil)
	denied(t, "session create without session write", err)

	if _, _, err := c.Event().Fire(&consulapi.UserEvent{Name: "deploy"}, nil); err != nil {
		t.Fatalf("fire deploy: %v", err)
	}
	_, _, err = c.Event().Fire(&consulapi.UserEvent{Name: "secret"}, nil)
	denied(t, "fire without event write", err)
	if _, _, err := mgmt.Event().Fire(&consulapi.UserEvent{Name: "secret"}, nil); err != nil {
		t.Fatal(err)
	}
	events, _, err := c.Event().List("", nil)
	if err != nil || len(events) != 1 || events[0].Name != "deploy" {
		t.Fatalf("event list: %v %v", events, err)
	}
	// The event list carries no LastContact, where consul/api's meta parsing
	// stops: the header is read as it is sent.
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+"/v1/event/list", nil)
	req.Header.Set("X-Consul-Token", locker)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Fatalf("event list headers: %v", resp.Header)
	}
	if all, _, err := mgmt.Event().List("", nil); err != nil || len(all) != 2 {
		t.Fatalf("management event list: %v %v", all, err)
	}
}

func TestACLAgentAndOperatorEndpoints(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	node := srv.NodeName()
	c := srv.ClientWithToken(t, servertest.TokenWithRules(t, mgmt, "web-agent", `service "web" { policy = "write" }`))
	if err := c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "web", Port: 80}); err != nil {
		t.Fatalf("agent register web: %v", err)
	}
	err := c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "db", Port: 81})
	denied(t, "agent register db", err)
	if err := mgmt.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "db", Port: 81}); err != nil {
		t.Fatal(err)
	}
	svcs, err := c.Agent().Services()
	if _, ok := svcs["web"]; err != nil || !ok || len(svcs) != 1 {
		t.Fatalf("agent services: %v %v", svcs, err)
	}
	err = c.Agent().ServiceDeregister("db")
	denied(t, "agent deregister db", err)
	err = c.Agent().EnableNodeMaintenance("x")
	denied(t, "node maintenance without node write", err)
	_, err = c.Agent().Self()
	denied(t, "agent self without agent read", err)
	ar := srv.ClientWithToken(t, servertest.TokenWithRules(t, mgmt, "agent-read", `agent "`+node+`" { policy = "read" }
operator = "read"`))
	if _, err := ar.Agent().Self(); err != nil {
		t.Fatalf("agent self with agent read: %v", err)
	}
	_, err = c.Operator().RaftGetConfiguration(nil)
	denied(t, "raft configuration without operator read", err)
	if _, err := ar.Operator().RaftGetConfiguration(nil); err != nil {
		t.Fatalf("raft configuration with operator read: %v", err)
	}
	members, err := c.Agent().Members(false)
	if err != nil || len(members) != 0 {
		t.Fatalf("members without node read: %v %v", members, err)
	}
}
