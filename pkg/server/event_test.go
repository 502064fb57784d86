package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	consulwatch "github.com/hashicorp/consul/api/watch"
	"github.com/hashicorp/go-hclog"

	"github.com/kvxproject/kvx/pkg/servertest"
)

func TestEventsListedWithIndexAndFilteredPerNode(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	// kvx-test (the server's node) runs web with tag prod.
	if err := c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: "web", Name: "web", Tags: []string{"prod"}}); err != nil {
		t.Fatal(err)
	}
	fire := func(p *consulapi.UserEvent) string {
		t.Helper()
		id, _, err := c.Event().Fire(p, nil)
		if err != nil {
			t.Fatalf("fire %+v: %v", p, err)
		}
		return id
	}
	all := fire(&consulapi.UserEvent{Name: "deploy", Payload: []byte("v1")})
	fire(&consulapi.UserEvent{Name: "deploy", NodeFilter: "^other$"})
	fire(&consulapi.UserEvent{Name: "deploy", ServiceFilter: "db"})
	fire(&consulapi.UserEvent{Name: "deploy", ServiceFilter: "web", TagFilter: "canary"})
	tagged := fire(&consulapi.UserEvent{Name: "deploy", ServiceFilter: "w.b", TagFilter: "pro"})
	fire(&consulapi.UserEvent{Name: "other"})
	events, meta, err := c.Event().List("deploy", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[0].ID != all || events[1].ID != tagged || string(events[0].Payload) != "v1" {
		t.Fatalf("listed %+v; want the unfiltered and the web/prod events", events)
	}
	if meta.LastIndex != c.Event().IDToIndex(tagged) {
		t.Fatalf("index %d, want %d (from the newest listed event's ID)", meta.LastIndex, c.Event().IDToIndex(tagged))
	}
	// Another node's view: ?for-node= (for agents that proxy the list).
	mustRegister(t, c, instance("other", "10.0.0.9", "db", "db-1", "passing"))
	var forOther []*consulapi.UserEvent
	code, body := rawGET(t, srv, "/v1/event/list?name=deploy&for-node=other")
	if code != 200 || json.Unmarshal([]byte(body), &forOther) != nil || len(forOther) != 3 {
		t.Fatalf("for-node=other: %d %s; want the unfiltered, the node=^other$ and the service=db events", code, body)
	}
	req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr()+"/v1/event/list?name=deploy", nil)
	req.Header.Set("X-Kvx-Node", "other")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	forOther = nil
	if json.NewDecoder(resp.Body).Decode(&forOther) != nil || len(forOther) != 3 {
		t.Fatalf("X-Kvx-Node: other: %+v", forOther)
	}
	resp.Body.Close()
	if events[1].LTime <= events[0].LTime {
		t.Fatalf("LTimes %d, %d: want increasing", events[0].LTime, events[1].LTime)
	}
	// A blocking list wakes on the next matching event.
	done := make(chan []*consulapi.UserEvent, 1)
	go func() {
		l, _, err := c.Event().List("deploy", &consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		if err != nil {
			t.Error(err)
		}
		done <- l
	}()
	fire(&consulapi.UserEvent{Name: "other"})
	next := fire(&consulapi.UserEvent{Name: "deploy", Payload: []byte("v2")})
	if l := <-done; len(l) != 3 || l[2].ID != next {
		t.Fatalf("blocking list woke with %+v", l)
	}
	// Refusals.
	for _, bad := range []*consulapi.UserEvent{
		{Name: "big", Payload: []byte(strings.Repeat("x", 510))},
		{Name: "re", NodeFilter: "("},
		{Name: "tag", TagFilter: "x"},
	} {
		if _, _, err := c.Event().Fire(bad, nil); err == nil {
			t.Errorf("fire %s succeeded, want refused", bad.Name)
		}
	}
	// Only the last 256 are kept.
	for range 260 {
		fire(&consulapi.UserEvent{Name: "flood"})
	}
	if l, _, _ := c.Event().List("", nil); len(l) != 256 {
		t.Fatalf("kept %d events, want 256", len(l))
	}
}

// Every watch type of consul/api/watch works against kvx: each fires at
// start, and again after a change to what it watches.
func TestEveryWatchType(t *testing.T) {
	srv := servertest.Start(t)
	c := srv.Client
	mustPut(t, c.KV(), "cfg/a", "1")
	mustRegister(t, c, instance("web1", "10.0.0.1", "web", "web-1", "passing"))
	change := map[string]func(){
		"key":       func() { mustPut(t, c.KV(), "cfg/a", "2") },
		"keyprefix": func() { mustPut(t, c.KV(), "cfg/b", "1") },
		"services":  func() { mustRegister(t, c, instance("db1", "10.0.0.2", "db", "db-1", "passing")) },
		"nodes":     func() { mustRegister(t, c, instance("web2", "10.0.0.3", "cache", "c-1", "passing")) },
		"service":   func() { mustRegister(t, c, instance("web3", "10.0.0.4", "web", "web-3", "passing")) },
		"checks":    func() { mustRegister(t, c, instance("web1", "10.0.0.1", "web", "web-1", "critical")) },
		"event": func() {
			if _, _, err := c.Event().Fire(&consulapi.UserEvent{Name: "go"}, nil); err != nil {
				t.Fatal(err)
			}
		},
	}
	params := map[string]map[string]any{
		"key":       {"type": "key", "key": "cfg/a"},
		"keyprefix": {"type": "keyprefix", "prefix": "cfg/"},
		"services":  {"type": "services"},
		"nodes":     {"type": "nodes"},
		"service":   {"type": "service", "service": "web"},
		"checks":    {"type": "checks", "service": "web"},
		"event":     {"type": "event", "name": "go"},
	}
	for _, typ := range []string{"key", "keyprefix", "services", "nodes", "service", "checks", "event"} {
		t.Run(typ, func(t *testing.T) {
			plan, err := consulwatch.Parse(params[typ])
			if err != nil {
				t.Fatal(err)
			}
			calls := make(chan any, 16)
			plan.Handler = func(_ uint64, v any) { calls <- v }
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = plan.RunWithClientAndHclog(c, hclog.New(&hclog.LoggerOptions{Output: io.Discard}))
			}()
			defer func() { plan.Stop(); <-done }()
			first := <-calls
			change[typ]()
			select {
			case second := <-calls:
				if typ == "event" {
					if ev := second.([]*consulapi.UserEvent); len(ev) != 1 || ev[0].Name != "go" {
						t.Fatalf("event watch got %+v", ev)
					}
				}
				_ = first
			case <-time.After(time.Minute):
				t.Fatalf("%s watch did not fire after a change", typ)
			}
		})
	}
}
