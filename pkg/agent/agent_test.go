package agent_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/agent"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// A config dir with an HTTP, a TCP, a script and a TTL check, against a
// real HTTP server, a real listener and real processes: the catalog gets
// the node, its services and the checks' results.
func TestConfigDirChecksReachTheCatalog(t *testing.T) {
	srv := startServer(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "web ok")
	}))
	t.Cleanup(web.Close) // after the agent stops (cleanups run last-in first-out)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer ln.Close()
	dir := t.TempDir()
	writeFile(t, dir, "web.json", `{"service": {"id": "web1", "name": "web", "port": 8080, "tags": ["v1"],
		"check": {"id": "web-http", "http": "`+web.URL+`", "interval": "50ms"}}}`)
	writeFile(t, dir, "db.json", `{"service": {"name": "db", "port": 5432,
		"checks": [{"tcp": "`+ln.Addr().String()+`", "interval": "50ms"}]}}`)
	writeFile(t, dir, "script.json", `{"checks": [
		{"id": "script-ok", "name": "ok", "args": ["sh", "-c", "echo fine"], "interval": "50ms"},
		{"id": "script-warn", "name": "warn", "service_id": "db", "args": ["sh", "-c", "echo meh; exit 1"], "interval": "50ms"}]}`)
	writeFile(t, dir, "ttl.json", `{"check": {"id": "batch", "name": "batch", "service_id": "db", "ttl": "1h"}}`)
	a := startAgent(t, []string{srv.HTTPAddr()}, func(o *agent.Options) {
		o.ConfigDir, o.EnableScriptChecks = dir, true
	})

	want := map[string]string{"web-http": "passing", "service:db": "passing", "script-ok": "passing",
		"script-warn": "warning", "batch": "critical", "serfHealth": "passing"}
	servertest.Eventually(t, "every check's result in the catalog", func() bool {
		checks, _, err := srv.Client.Health().Node("agent-1", nil)
		if err != nil || len(checks) != len(want) {
			return false
		}
		for _, c := range checks {
			if want[c.CheckID] != c.Status {
				return false
			}
		}
		return true
	})
	if c := nodeCheck(t, srv.Client, "agent-1", "web-http"); !strings.Contains(c.Output, "web ok") || c.ServiceID != "web1" {
		t.Errorf("web-http = %+v; want the body in its output", c)
	}
	if c := nodeCheck(t, srv.Client, "agent-1", "script-warn"); !strings.Contains(c.Output, "meh") {
		t.Errorf("script-warn output = %q", c.Output)
	}
	// db has a warning and a critical check, web only passing ones (its
	// own and the node's).
	if e := passing(t, srv.Client, "db"); len(e) != 0 {
		t.Fatalf("db ?passing = %+v", e)
	}
	if e := passing(t, srv.Client, "web"); len(e) != 1 || e[0].Service.Port != 8080 || e[0].Node.Address != "127.0.0.1" {
		t.Fatalf("web ?passing = %+v", e)
	}
	// The agent's own view, through its API.
	checks, err := a.c.Agent().Checks()
	if err != nil || checks["script-warn"].Status != "warning" || checks["web-http"].Node != "agent-1" {
		t.Fatalf("agent checks = %+v, %v", checks, err)
	}
	// The TCP target goes away: the check turns critical, never a crash.
	ln.Close()
	servertest.Eventually(t, "the TCP check critical", func() bool {
		c := nodeCheck(t, srv.Client, "agent-1", "service:db")
		return c != nil && c.Status == "critical"
	})
}

// A check turning critical takes its instance out of ?passing, and a
// blocking query on the service returns.
func TestCriticalCheckLeavesPassing(t *testing.T) {
	srv := startServer(t)
	var healthy atomic.Bool
	healthy.Store(true)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(web.Close)
	dir := t.TempDir()
	writeFile(t, dir, "web.json", `{"service": {"name": "web", "port": 80, "check": {"http": "`+web.URL+`", "interval": "50ms"}}}`)
	startAgent(t, []string{srv.HTTPAddr()}, func(o *agent.Options) { o.ConfigDir = dir })
	var idx uint64
	servertest.Eventually(t, "web passing", func() bool {
		e, meta, err := srv.Client.Health().Service("web", "", true, nil)
		if err == nil && len(e) == 1 {
			idx = meta.LastIndex
			return true
		}
		return false
	})
	done := make(chan []*consulapi.ServiceEntry, 1)
	go func() {
		e, _, err := srv.Client.Health().Service("web", "", true, &consulapi.QueryOptions{WaitIndex: idx, WaitTime: time.Minute})
		if err != nil {
			t.Error(err)
		}
		done <- e
	}()
	healthy.Store(false)
	select {
	case e := <-done:
		if len(e) != 0 {
			t.Fatalf("blocking query woke with %d passing instances, want 0", len(e))
		}
	case <-time.After(time.Minute):
		t.Fatal("the blocking query did not return")
	}
	healthy.Store(true)
	servertest.Eventually(t, "web passing again", func() bool { return len(passing(t, srv.Client, "web")) == 1 })
}

// The catalog is put back when someone changes it behind the agent's back,
// and entries of the node the agent does not know are removed; steady
// checks cost no catalog writes.
func TestAntiEntropy(t *testing.T) {
	srv := startServer(t)
	dir := t.TempDir()
	writeFile(t, dir, "web.json", `{"service": {"name": "web", "port": 80, "check": {"ttl": "1h", "status": "passing"}}}`)
	a := startAgent(t, []string{srv.HTTPAddr()}, func(o *agent.Options) {
		o.ConfigDir, o.SyncInterval = dir, 100*time.Millisecond
	})
	servertest.Eventually(t, "web registered", func() bool { return len(passing(t, srv.Client, "web")) == 1 })

	cat := srv.Client.Catalog()
	if _, err := cat.Deregister(&consulapi.CatalogDeregistration{Node: "agent-1", ServiceID: "web"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Register(&consulapi.CatalogRegistration{Node: "agent-1", SkipNodeUpdate: true,
		Service: &consulapi.AgentService{ID: "intruder", Service: "intruder", Port: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "web put back and intruder removed", func() bool {
		n, _, err := cat.Node("agent-1", nil)
		return err == nil && n != nil && n.Services["web"] != nil && n.Services["intruder"] == nil &&
			len(passing(t, srv.Client, "web")) == 1
	})
	// The whole node deleted: registered again, with serfHealth back on
	// the next heartbeat.
	if _, err := cat.Deregister(&consulapi.CatalogDeregistration{Node: "agent-1"}, nil); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the node registered again", func() bool {
		n, _, err := cat.Node("agent-1", nil)
		return err == nil && n != nil && n.Services["web"] != nil
	})

	// Steady state: syncs go on, writes do not.
	syncs, writes := a.State().Stats()
	servertest.Eventually(t, "three more syncs", func() bool {
		s, _ := a.State().Stats()
		return s >= syncs+3
	})
	if _, w := a.State().Stats(); w != writes {
		t.Fatalf("steady syncs made %d catalog writes, want 0", w-writes)
	}
}

// A reload with a bad file is refused, naming the file and the field, and
// the running definitions stay; a good one applies.
func TestReloadKeepsDefinitionsOnBadFile(t *testing.T) {
	srv := startServer(t)
	dir := t.TempDir()
	writeFile(t, dir, "web.json", `{"service": {"name": "web", "port": 80}}`)
	a := startAgent(t, []string{srv.HTTPAddr()}, func(o *agent.Options) { o.ConfigDir = dir })
	servertest.Eventually(t, "web registered", func() bool { return len(passing(t, srv.Client, "web")) == 1 })

	writeFile(t, dir, "api.json", `{"service": {"name": "api", "port": 81, "check": {"http": "http://127.0.0.1:1", "interval": "10x"}}}`)
	err := a.Reload()
	if err == nil || !strings.Contains(err.Error(), "api.json") || !strings.Contains(err.Error(), "service.check.interval") {
		t.Fatalf("reload with a bad file: %v; want an error naming api.json and service.check.interval", err)
	}
	if svcs, _ := a.c.Agent().Services(); len(svcs) != 1 || svcs["web"] == nil {
		t.Fatalf("services after a refused reload = %v; want web alone", svcs)
	}
	// PUT /v1/agent/reload is the same reload.
	if err := a.c.Agent().Reload(); err == nil || !strings.Contains(err.Error(), "api.json") {
		t.Fatalf("PUT /v1/agent/reload with a bad file: %v", err)
	}
	writeFile(t, dir, "api.json", `{"service": {"name": "api", "port": 81}}`)
	writeFile(t, dir, "web.json", `{}`)
	if err := a.c.Agent().Reload(); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "api registered and web gone", func() bool {
		return len(passing(t, srv.Client, "api")) == 1 && len(passing(t, srv.Client, "web")) == 0
	})
}

// A bad file at start is an error naming it; LoadConfig is -validate.
func TestBadConfigAtStart(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "web.json", `{"service": {"name": "web", "port": "eighty"}}`)
	_, err := agent.New(agent.Options{Join: []string{"127.0.0.1:1"}, ConfigDir: dir, NodeName: "n"})
	if err == nil || !strings.Contains(err.Error(), "web.json: service.port") {
		t.Fatalf("agent.New with a bad file: %v", err)
	}
	if _, err := agent.LoadConfig(filepath.Join("..", "..", "testdata", "agent"), true); err != nil {
		t.Fatalf("testdata/agent: %v", err)
	}
}

// A service whose check stays critical past deregister_critical_service_after
// is deregistered.
func TestDeregisterCriticalServiceAfter(t *testing.T) {
	srv := startServer(t)
	a := startAgent(t, []string{srv.HTTPAddr()})
	err := a.c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "flaky", Port: 1,
		Check: &consulapi.AgentServiceCheck{TCP: deadAddr(t), Interval: "50ms", DeregisterCriticalServiceAfter: "100ms"}})
	if err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "flaky deregistered", func() bool {
		svcs, _ := a.c.Agent().Services()
		sns, _, _ := srv.Client.Catalog().Service("flaky", "", nil)
		return len(svcs) == 0 && len(sns) == 0
	})
}

// Requests other than /v1/agent/* go to a server, past a dead one:
// KV writes and reads, blocking queries with their index, the catalog.
func TestForwardingWithFailover(t *testing.T) {
	srv := startServer(t)
	a := startAgent(t, []string{deadAddr(t), srv.HTTPAddr()})
	kv := a.c.KV()
	if _, err := kv.Put(&consulapi.KVPair{Key: "app/color", Value: []byte("blue")}, nil); err != nil {
		t.Fatal(err)
	}
	p, meta, err := kv.Get("app/color", nil)
	if err != nil || p == nil || string(p.Value) != "blue" || meta.LastIndex == 0 {
		t.Fatalf("get through the agent = %+v, %+v, %v", p, meta, err)
	}
	done := make(chan string, 1)
	go func() {
		p, _, err := kv.Get("app/color", &consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		if err != nil || p == nil {
			done <- fmt.Sprint(err)
			return
		}
		done <- string(p.Value)
	}()
	// A write to the server wakes the blocking query held through the agent.
	servertest.Eventually(t, "the blocking query woken", func() bool {
		if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: "app/color", Value: []byte("green")}, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-done:
			if v != "green" {
				t.Fatalf("blocking query through the agent = %q", v)
			}
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
	leader, err := a.c.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("status/leader through the agent = %q, %v", leader, err)
	}
	servertest.Eventually(t, "the agent's node in the catalog through the agent", func() bool {
		nodes, _, err := a.c.Catalog().Nodes(nil)
		return err == nil && len(nodes) == 2
	})
}

// /v1/agent/members lists the servers and the agents, with their status,
// on an agent and on a server; a stopped agent with leave-on-terminate
// leaves the catalog.
func TestMembersAndLeave(t *testing.T) {
	srv := startServer(t)
	a := startAgent(t, []string{srv.HTTPAddr()})
	b := startAgent(t, []string{srv.HTTPAddr()}, func(o *agent.Options) { o.NodeName = "agent-2"; o.LeaveOnTerminate = false })
	for _, c := range []*consulapi.Client{a.c, srv.Client} {
		servertest.Eventually(t, "three members alive", func() bool {
			ms, err := c.Agent().Members(false)
			if err != nil || len(ms) != 3 {
				return false
			}
			roles := map[string]string{}
			for _, m := range ms {
				if m.Status != 1 {
					return false
				}
				roles[m.Name] = m.Tags["role"]
			}
			return roles[srv.NodeName()] == "consul" && roles["agent-1"] == "node" && roles["agent-2"] == "node"
		})
	}
	self, err := a.c.Agent().Self()
	if err != nil || self["Config"]["NodeName"] != "agent-1" || self["Config"]["Server"] != false {
		t.Fatalf("self = %v, %v", self["Config"], err)
	}
	a.stop()
	if n, _, _ := srv.Client.Catalog().Node("agent-1", nil); n != nil {
		t.Fatalf("agent-1 still in the catalog after leaving: %+v", n.Node)
	}
	b.stop()
	if n, _, _ := srv.Client.Catalog().Node("agent-2", nil); n == nil {
		t.Fatal("agent-2 left the catalog without -leave-on-terminate")
	}
}

// With a data dir, what was registered through the API is registered again
// after a restart, and the node keeps its ID.
func TestDataDirKeepsAPIRegistrations(t *testing.T) {
	srv := startServer(t)
	dataDir := t.TempDir()
	withDir := func(o *agent.Options) { o.DataDir = dataDir }
	a := startAgent(t, []string{srv.HTTPAddr()}, withDir)
	if err := a.c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: "api-1", Name: "api", Port: 9,
		Check: &consulapi.AgentServiceCheck{TTL: "1h", Status: "passing"}}); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Agent().CheckRegister(&consulapi.AgentCheckRegistration{Name: "node-ttl",
		AgentServiceCheck: consulapi.AgentServiceCheck{TTL: "1h"}}); err != nil {
		t.Fatal(err)
	}
	n1, _, err := srv.Client.Catalog().Node("agent-1", nil)
	if err != nil || n1 == nil {
		t.Fatal(n1, err)
	}
	a.stop()
	b := startAgent(t, []string{srv.HTTPAddr()}, withDir)
	svcs, err := b.c.Agent().Services()
	if err != nil || svcs["api-1"] == nil {
		t.Fatalf("services after a restart = %v, %v", svcs, err)
	}
	checks, err := b.c.Agent().Checks()
	if err != nil || checks["service:api-1"] == nil || checks["node-ttl"] == nil {
		t.Fatalf("checks after a restart = %v, %v", checks, err)
	}
	servertest.Eventually(t, "api-1 in the catalog with the same node ID", func() bool {
		n, _, err := srv.Client.Catalog().Node("agent-1", nil)
		return err == nil && n != nil && n.Services["api-1"] != nil && n.Node.ID == n1.Node.ID
	})
}

// An HTTP port in use fails the start, before the node is registered.
func TestPortInUseFailsBeforeRegistering(t *testing.T) {
	srv := startServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := agent.New(agent.Options{Join: []string{srv.HTTPAddr()}, NodeName: "busy", HTTPAddr: ln.Addr().String(), LeaveOnTerminate: true})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("run on a busy port: %v", err)
	}
	if n, _, err := srv.Client.Catalog().Node("busy", nil); err != nil || n != nil {
		t.Fatalf("node busy = %+v, %v; want none", n, err)
	}
}

// A session created through an agent without a Node is the agent's node's
// (as with Consul), and the events an agent lists are those for its node.
func TestSessionsAndEventsAreTheAgentsNode(t *testing.T) {
	srv := startServer(t)
	a := startAgent(t, []string{srv.HTTPAddr()}, func(o *agent.Options) { o.NodeName = "agent-s" })
	servertest.Eventually(t, "the agent's node in the catalog", func() bool {
		n, _, err := srv.Client.Catalog().Node("agent-s", nil)
		return err == nil && n != nil
	})
	id, _, err := a.c.Session().Create(&consulapi.SessionEntry{Name: "through-agent", Checks: []string{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	se, _, err := srv.Client.Session().Info(id, nil)
	if err != nil || se == nil || se.Node != "agent-s" {
		t.Fatalf("session created through the agent = %+v, %v; want node agent-s", se, err)
	}
	for _, nodeFilter := range []string{"^agent-s$", "^elsewhere$"} {
		if _, _, err := srv.Client.Event().Fire(&consulapi.UserEvent{Name: "deploy", NodeFilter: nodeFilter}, nil); err != nil {
			t.Fatal(err)
		}
	}
	evs, _, err := a.c.Event().List("deploy", nil)
	if err != nil || len(evs) != 1 || evs[0].NodeFilter != "^agent-s$" {
		t.Fatalf("events listed through the agent = %+v, %v; want only the one for agent-s", evs, err)
	}
}

// The config dir's watches run in the agent: a key watch's script handler
// gets the key's JSON on stdin; its state in the data dir keeps a restarted
// agent from running it again for the same value; a reload with a bad watch
// is refused naming the file and entry, and one that drops the watch stops
// it.
func TestConfigDirWatches(t *testing.T) {
	srv := startServer(t)
	if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: "app/color", Value: []byte("blue")}, nil); err != nil {
		t.Fatal(err)
	}
	dir, data := t.TempDir(), t.TempDir()
	seen := filepath.Join(t.TempDir(), "seen")
	watchJSON := `{"watches": [{"type": "key", "key": "app/color", "handler_type": "script",
	  "args": ["sh", "-c", "cat >> ` + seen + `"]}]}`
	writeFile(t, dir, "watch.json", watchJSON)
	opts := func(o *agent.Options) {
		o.ConfigDir, o.DataDir = dir, data
	}
	a := startAgent(t, []string{srv.HTTPAddr()}, opts)
	runs := func() int { b, _ := os.ReadFile(seen); return strings.Count(string(b), `"Key":"app/color"`) }
	servertest.Eventually(t, "the handler run at start", func() bool {
		b, _ := os.ReadFile(seen)
		return strings.Contains(string(b), `"Key":"app/color"`) && strings.Contains(string(b), `"Value":"Ymx1ZQ=="`)
	})
	if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: "app/color", Value: []byte("green")}, nil); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the handler run for the change", func() bool { return runs() == 2 })

	writeFile(t, dir, "bad.json", `{"watches": [{"type": "nosuchtype", "args": ["true"]}]}`)
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "bad.json: watches[0]") {
		t.Fatalf("reload with a bad watch: %v; want an error naming bad.json: watches[0]", err)
	}
	if err := os.Remove(filepath.Join(dir, "bad.json")); err != nil {
		t.Fatal(err)
	}

	// A restarted agent with the same data dir: the value is unchanged, so
	// the handler does not run again; a change runs it.
	a.stop()
	b := startAgent(t, []string{srv.HTTPAddr()}, opts)
	if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: "app/other", Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: "app/color", Value: []byte("red")}, nil); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the handler run for the change after the restart", func() bool {
		b, _ := os.ReadFile(seen)
		return strings.Contains(string(b), `"Value":"cmVk"`)
	})
	if n := runs(); n != 3 {
		b, _ := os.ReadFile(seen)
		t.Fatalf("handler runs = %d, want 3 (the restart re-ran it for an unchanged value):\n%s", n, b)
	}

	writeFile(t, dir, "watch.json", `{}`)
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: "app/color", Value: []byte("black")}, nil); err != nil {
		t.Fatal(err)
	}
	// A service registration through the agent is a round trip that the
	// dropped watch would have had time to fire within; the handler count
	// must stay.
	if err := b.c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{Name: "probe"}); err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != 3 {
		t.Fatalf("handler runs = %d after the watch was dropped, want 3", n)
	}
}
