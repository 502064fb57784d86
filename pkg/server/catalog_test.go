package server_test

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

func mustRegister(t *testing.T, c *consulapi.Client, r *consulapi.CatalogRegistration) uint64 {
	t.Helper()
	if _, err := c.Catalog().Register(r, nil); err != nil {
		t.Fatalf("register %s: %v", r.Node, err)
	}
	_, m, err := c.Catalog().Nodes(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m.LastIndex
}

// instance is a node with one service and one check of that service.
func instance(node, addr, svc, id, status string, tags ...string) *consulapi.CatalogRegistration {
	return &consulapi.CatalogRegistration{
		Node: node, Address: addr,
		Service: &consulapi.AgentService{ID: id, Service: svc, Tags: tags, Port: 80},
		Check:   &consulapi.AgentCheck{CheckID: "service:" + id, Name: "check", ServiceID: id, Status: status},
	}
}

func TestCatalogAndHealthThroughConsulClient(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	mustRegister(t, c, instance("web1", "10.0.0.1", "web", "web-1", "passing", "prod", "az-a"))
	mustRegister(t, c, instance("web2", "10.0.0.2", "web", "web-2", "warning", "canary"))
	reg := instance("db1", "10.0.0.9", "db", "db", "passing", "primary")
	reg.NodeMeta = map[string]string{"rack": "r1"}
	reg.Service.Meta = map[string]string{"version": "15"}
	mustRegister(t, c, reg)

	dcs, err := c.Catalog().Datacenters()
	if err != nil || !slices.Equal(dcs, []string{"dc1"}) {
		t.Fatalf("datacenters = %q, %v", dcs, err)
	}
	nodes, meta, err := c.Catalog().Nodes(nil)
	if err != nil || len(nodes) != 4 || meta.LastIndex == 0 || !meta.KnownLeader {
		t.Fatalf("nodes = %d, %+v, %v; want 3 and the server's own", len(nodes), meta, err)
	}
	nodes, _, _ = c.Catalog().Nodes(&consulapi.QueryOptions{NodeMeta: map[string]string{"rack": "r1"}})
	if len(nodes) != 1 || nodes[0].Node != "db1" {
		t.Fatalf("nodes with rack r1 = %+v", nodes)
	}
	services, _, err := c.Catalog().Services(nil)
	if err != nil || !slices.Equal(services["web"], []string{"az-a", "canary", "prod"}) || services["consul"] == nil {
		t.Fatalf("services = %v, %v", services, err)
	}
	sns, _, err := c.Catalog().ServiceMultipleTags("web", []string{"prod", "az-a"}, nil)
	if err != nil || len(sns) != 1 || sns[0].ServiceID != "web-1" || sns[0].Datacenter != "dc1" {
		t.Fatalf("web with prod and az-a = %+v, %v", sns, err)
	}
	sns, _, _ = c.Catalog().Service("db", "", &consulapi.QueryOptions{Filter: `ServiceMeta.version == "15" and NodeMeta.rack == "r1"`})
	if len(sns) != 1 || sns[0].ServicePort != 80 {
		t.Fatalf("db by filter = %+v", sns)
	}
	sns, _, _ = c.Catalog().Service("db", "", &consulapi.QueryOptions{Filter: `ServiceMeta.version == "14"`})
	if len(sns) != 0 {
		t.Fatalf("db by a filter matching nothing = %+v", sns)
	}
	node, _, err := c.Catalog().Node("web1", nil)
	if err != nil || node.Node.Address != "10.0.0.1" || node.Services["web-1"] == nil {
		t.Fatalf("node web1 = %+v, %v", node, err)
	}
	if node, _, err := c.Catalog().Node("nope", nil); err != nil || node != nil {
		t.Fatalf("missing node = %+v, %v; want nil", node, err)
	}

	all, _, err := c.Health().Service("web", "", false, nil)
	if err != nil || len(all) != 2 || all[1].Checks.AggregatedStatus() != "warning" {
		t.Fatalf("health web = %+v, %v", all, err)
	}
	passing, _, _ := c.Health().Service("web", "", true, nil)
	if len(passing) != 1 || passing[0].Service.ID != "web-1" {
		t.Fatalf("passing web = %+v; want web-1 only (warning is not passing)", passing)
	}
	checks, _, err := c.Health().Checks("web", nil)
	if err != nil || len(checks) != 2 {
		t.Fatalf("health checks web = %+v, %v", checks, err)
	}
	warn, _, err := c.Health().State("warning", nil)
	if err != nil || len(warn) != 1 || warn[0].ServiceID != "web-2" || !slices.Equal(warn[0].ServiceTags, []string{"canary"}) {
		t.Fatalf("warning checks = %+v, %v", warn, err)
	}
	self, _, err := c.Health().Node(srv.NodeName(), nil)
	if err != nil || len(self) != 1 || self[0].CheckID != "serfHealth" || self[0].Status != "passing" {
		t.Fatalf("the server's own checks = %+v, %v; want serfHealth passing", self, err)
	}

	// Deregistering a check, a service, a node.
	if _, err := c.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: "web2", CheckID: "service:web-2"}, nil); err != nil {
		t.Fatal(err)
	}
	if passing, _, _ := c.Health().Service("web", "", true, nil); len(passing) != 2 {
		t.Fatalf("web-2 without its warning check: %d passing, want 2", len(passing))
	}
	if _, err := c.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: "web1", ServiceID: "web-1"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: "db1"}, nil); err != nil {
		t.Fatal(err)
	}
	if sns, _, _ := c.Catalog().Service("web", "", nil); len(sns) != 1 || sns[0].Node != "web2" {
		t.Fatalf("web after deregistering web-1 = %+v", sns)
	}
	if n, _, _ := c.Catalog().Node("db1", nil); n != nil {
		t.Fatalf("db1 after its deregistration = %+v", n)
	}
}

func TestServerIsInItsOwnCatalog(t *testing.T) {
	srv := servertest.Start(t)
	sns, _, err := srv.Client.Catalog().Service("consul", "", nil)
	_, port, _ := net.SplitHostPort(srv.RaftAddr())
	if err != nil || len(sns) != 1 || sns[0].Node != srv.NodeName() || strconv.Itoa(sns[0].ServicePort) != port {
		t.Fatalf("consul service = %+v, %v; want this server on its raft port %s", sns, err, port)
	}
	n := sns[0]
	if len(n.ID) != 36 || n.TaggedAddresses["lan"] != "127.0.0.1" || n.Address != "127.0.0.1" {
		t.Fatalf("server node = %+v; want a UUID and its address", n)
	}
}

// rawGET returns the status and body of a GET on the server's HTTP API.
func rawGET(t *testing.T, srv *servertest.Server, path string) (int, string) {
	t.Helper()
	code, body, _ := rawDo(t, "GET", "http://"+srv.HTTPAddr()+path, nil)
	return code, body
}

func TestCatalogListsAreNeverNull(t *testing.T) {
	srv := servertest.Start(t)
	for _, p := range []string{
		"/v1/catalog/service/none", "/v1/health/service/none", "/v1/health/checks/none",
		"/v1/health/node/none", "/v1/health/state/warning", "/v1/health/state/bogus",
		"/v1/catalog/nodes?node-meta=a:b", "/v1/catalog/service/consul?tag=x",
	} {
		if code, body := rawGET(t, srv, p); code != 200 || strings.TrimSpace(body) != "[]" {
			t.Errorf("GET %s = %d %q, want 200 []", p, code, body)
		}
	}
	if code, body := rawGET(t, srv, "/v1/catalog/node/none"); code != 200 || strings.TrimSpace(body) != "null" {
		t.Errorf("missing node = %d %q, want 200 null as Consul", code, body)
	}
}

func TestCatalogRefusesBadInputAndChangesNothing(t *testing.T) {
	srv := servertest.Start(t)
	mustRegister(t, srv.Client, instance("web1", "10.0.0.1", "web", "web-1", "passing"))
	_, before := rawGET(t, srv, "/v1/catalog/service/web")
	_, meta, _ := srv.Client.Catalog().Services(nil)
	tests := []struct {
		body string
		code int
		msg  string
	}{
		{`{not json`, 400, "Request decode failed: invalid character 'n' looking for beginning of object key string"},
		{`{"Address":"10.0.0.5"}`, 500, "Must provide node"},
		{`{"Node":"web1"}`, 500, "Must provide address if SkipNodeUpdate is not set"},
		{`{"Node":"web1","Address":"10.0.0.1","Check":{"CheckID":"c","Status":"bogus"}}`, 400, "Invalid check status: 'bogus'"},
		{`{"Node":"web1","Address":"10.0.0.1","Service":{"ID":"web-1","Service":"api"}}`, 400, `Service ID "web-1" on node "web1" is already registered for service "web"`},
		{`{"Node":"web1","Address":"10.0.0.1","Check":{"CheckID":"c","ServiceID":"nope"}}`, 400, "Missing service registration"},
	}
	for _, tc := range tests {
		code, body, _ := rawDo(t, "PUT", "http://"+srv.HTTPAddr()+"/v1/catalog/register", []byte(tc.body))
		if code != tc.code || body != tc.msg {
			t.Errorf("register %s = %d %q, want %d %q", tc.body, code, body, tc.code, tc.msg)
		}
	}
	_, after := rawGET(t, srv, "/v1/catalog/service/web")
	_, meta2, _ := srv.Client.Catalog().Services(nil)
	if after != before || meta2.LastIndex != meta.LastIndex {
		t.Fatalf("a refused register changed the catalog: %s -> %s, index %d -> %d", before, after, meta.LastIndex, meta2.LastIndex)
	}
	if code, _, _ := rawDo(t, "GET", "http://"+srv.HTTPAddr()+"/v1/catalog/register", nil); code != 405 {
		t.Fatalf("GET register = %d, want 405", code)
	}
	for _, p := range []string{"/v1/catalog/nodes?index=x", "/v1/health/service/web?passing=maybe", "/v1/catalog/nodes?filter=Node%20%3D%3D", "/v1/catalog/nodes?stale&consistent"} {
		if code, _ := rawGET(t, srv, p); code != 400 {
			t.Errorf("GET %s = %d, want 400", p, code)
		}
	}
}

// wakeups reads how many times the server's blocking queries were woken.
func wakeups(t *testing.T, c *consulapi.Client) (blocked, woken int) {
	t.Helper()
	self, err := c.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	raft := self["Stats"]["raft"].(map[string]any)
	blocked, _ = strconv.Atoi(raft["blocking_queries"].(string))
	woken, _ = strconv.Atoi(raft["blocking_wakeups"].(string))
	return blocked, woken
}

type healthAnswer struct {
	entries []*consulapi.ServiceEntry
	index   uint64
	err     error
}

// watch starts a blocking ?passing query on service at index.
func watch(c *consulapi.Client, service string, index uint64) <-chan healthAnswer {
	ch := make(chan healthAnswer, 1)
	go func() {
		e, m, err := c.Health().Service(service, "", true, &consulapi.QueryOptions{WaitIndex: index, WaitTime: time.Minute})
		a := healthAnswer{entries: e, err: err}
		if m != nil {
			a.index = m.LastIndex
		}
		ch <- a
	}()
	return ch
}

func TestBlockingHealthWakesOnlyTheServiceThatChanged(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	mustRegister(t, c, instance("a", "10.0.0.1", "alpha", "alpha", "passing"))
	mustRegister(t, c, instance("b", "10.0.0.2", "beta", "beta", "passing"))
	_, meta, err := c.Health().Service("beta", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	beta := watch(c, "beta", meta.LastIndex)
	servertest.Eventually(t, "the beta watcher to block", func() bool { b, _ := wakeups(t, c); return b == 1 })
	_, before := wakeups(t, c)

	// Changes to alpha, to alpha's node, and a new service: none is beta's.
	for i := range 5 {
		status := []string{"critical", "passing"}[i%2]
		mustRegister(t, c, instance("a", "10.0.0.1", "alpha", "alpha", status))
	}
	mustRegister(t, c, &consulapi.CatalogRegistration{Node: "a", Address: "10.0.0.1",
		Check: &consulapi.AgentCheck{CheckID: "node-alive", Status: "critical"}})
	mustRegister(t, c, instance("c", "10.0.0.3", "gamma", "gamma", "passing"))
	mustPut(t, c.KV(), "some/key", "v")

	// beta's check turns critical: its watcher returns at once, without it.
	mustRegister(t, c, instance("b", "10.0.0.2", "beta", "beta", "critical"))
	a := <-beta
	if a.err != nil || len(a.entries) != 0 || a.index <= meta.LastIndex {
		t.Fatalf("beta watcher = %d entries at %d, %v; want none, past %d", len(a.entries), a.index, a.err, meta.LastIndex)
	}
	if _, after := wakeups(t, c); after-before != 1 {
		t.Fatalf("the beta watcher was woken %d times, want 1: other services' changes woke it", after-before)
	}

	// A watcher of a service that goes away wakes once, and its index does
	// not go backwards; then only beta's own changes wake it.
	gone := watch(c, "beta", a.index)
	servertest.Eventually(t, "the beta watcher to block again", func() bool { b, _ := wakeups(t, c); return b == 1 })
	if _, err := c.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: "b"}, nil); err != nil {
		t.Fatal(err)
	}
	g := <-gone
	if g.err != nil || len(g.entries) != 0 || g.index <= a.index {
		t.Fatalf("after beta's node left: %d entries at %d, %v; want none, past %d", len(g.entries), g.index, g.err, a.index)
	}
	again := watch(c, "beta", g.index)
	servertest.Eventually(t, "the watcher of the removed beta to block", func() bool { b, _ := wakeups(t, c); return b == 1 })
	_, before = wakeups(t, c)
	mustRegister(t, c, instance("a", "10.0.0.1", "alpha", "alpha", "warning"))
	mustRegister(t, c, instance("b", "10.0.0.2", "beta", "beta", "passing"))
	r := <-again
	if r.err != nil || len(r.entries) != 1 || r.index <= g.index {
		t.Fatalf("beta back = %d entries at %d, %v", len(r.entries), r.index, r.err)
	}
	if _, after := wakeups(t, c); after-before != 1 {
		t.Fatalf("the watcher of the removed beta was woken %d times, want 1", after-before)
	}
}

func TestCatalogThroughAFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	srvs, clients := cluster(t)
	var (
		follower     *consulapi.Client
		followerHTTP string
	)
	for i, s := range srvs {
		if !s.IsLeader() {
			follower, followerHTTP = clients[i], s.HTTPAddr()
		}
	}
	// The leader registers every server, with serfHealth and the consul service.
	servertest.Eventually(t, "three servers in the consul service", func() bool {
		e, _, err := follower.Health().Service("consul", "", true, nil)
		return err == nil && len(e) == 3
	})
	mustRegister(t, follower, instance("web1", "10.0.0.1", "web", "web-1", "passing"))
	e, _, err := follower.Health().Service("web", "", true, nil)
	if err != nil || len(e) != 1 {
		t.Fatalf("web through the follower = %+v, %v", e, err)
	}
	// An agent's heartbeat through a follower reaches the leader.
	if code, body, _ := rawDo(t, "PUT", "http://"+followerHTTP+"/v1/kvx/heartbeat/web1", nil); code != 200 {
		t.Fatalf("heartbeat through the follower = %d %q", code, body)
	}
	if st, _ := serfHealth(t, follower, "web1"); st != "passing" {
		t.Fatalf("web1's serfHealth after a heartbeat = %q", st)
	}
	servertest.Eventually(t, "web in the follower's own (stale) copy", func() bool {
		stale, m, err := follower.Health().Service("web", "", true, &consulapi.QueryOptions{AllowStale: true})
		return err == nil && len(stale) == 1 && m.KnownLeader
	})
}

// Watchers of one service woken together share an encoded answer: each
// still gets the answer to its own question.
func TestWatchersWithOtherFiltersGetTheirOwnAnswers(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	mustRegister(t, c, instance("n1", "10.0.0.1", "web", "web-1", "passing", "prod"))
	_, meta, err := c.Catalog().Service("web", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		n   int
		err error
	}
	ask := func(tag string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			sns, _, err := c.Catalog().Service("web", tag, &consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
			ch <- answer{len(sns), err}
		}()
		return ch
	}
	all, prod, canary := ask(""), ask("prod"), ask("canary")
	servertest.Eventually(t, "three blocked watchers", func() bool { b, _ := wakeups(t, c); return b == 3 })
	mustRegister(t, c, instance("n2", "10.0.0.2", "web", "web-2", "passing", "canary"))
	for _, tc := range []struct {
		name string
		ch   <-chan answer
		want int
	}{{"all", all, 2}, {"prod", prod, 1}, {"canary", canary, 1}} {
		if a := <-tc.ch; a.err != nil || a.n != tc.want {
			t.Errorf("%s watcher: %d instances, %v; want %d", tc.name, a.n, a.err, tc.want)
		}
	}
}
