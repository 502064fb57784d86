package state

import (
	"bytes"
	"errors"
	"testing"

	memdb "github.com/hashicorp/go-memdb"
)

func register(t *testing.T, s *Store, idx uint64, r *Registration) {
	t.Helper()
	w := s.Write()
	w.At(idx)
	if err := w.Register(r); err != nil {
		w.Abort()
		t.Fatalf("register %+v at %d: %v", r.Node, idx, err)
	}
	w.Commit()
}

func deregister(t *testing.T, s *Store, idx uint64, d *Deregistration) {
	t.Helper()
	w := s.Write()
	w.At(idx)
	if err := w.Deregister(d); err != nil {
		w.Abort()
		t.Fatalf("deregister %+v at %d: %v", d, idx, err)
	}
	w.Commit()
}

func instance(node, addr, svc, id, status string) *Registration {
	return &Registration{
		Node:    Node{Node: node, Address: addr},
		Service: &Service{ID: id, Service: svc, Port: 80, Weights: Weights{1, 1}},
		Checks:  []*Check{{CheckID: "service:" + id, Name: "check", ServiceID: id, Status: status}},
	}
}

func TestCatalogRegisterAndIndexes(t *testing.T) {
	s := New()
	register(t, s, 10, instance("web1", "10.0.0.1", "web", "web-1", HealthPassing))
	register(t, s, 11, instance("web2", "10.0.0.2", "web", "web-2", HealthWarning))
	register(t, s, 12, instance("db1", "10.0.0.9", "db", "db", HealthPassing))
	rt := s.Read()
	idx, hs := rt.ServiceHealth(nil, "web")
	if idx != 11 || len(hs) != 2 || hs[0].Node.Node != "web1" || !hs[0].Passing() || hs[1].Passing() {
		t.Fatalf("web health = %d, %+v; want index 11, web1 passing, web2 not", idx, hs)
	}
	if c := hs[0].Checks[0]; c.ServiceName != "web" || c.CreateIndex != 10 || c.ServiceTags == nil {
		t.Fatalf("check = %+v", c)
	}
	if idx := rt.ServiceIndex(nil, "never"); idx != 12 {
		t.Fatalf("index of a service that never existed = %d, want the catalog's 12", idx)
	}
	if idx, n, _ := rt.NodeServices(nil, "nope"); idx != 0 || n != nil {
		t.Fatalf("missing node = %d, %v; want 0, nil", idx, n)
	}
	// The same registration again changes nothing.
	register(t, s, 13, instance("web1", "10.0.0.1", "web", "web-1", HealthPassing))
	if idx := s.Read().ServiceIndex(nil, "web"); idx != 11 {
		t.Fatalf("no-op re-registration moved web's index to %d", idx)
	}
	// A node-level check moves every service of the node, and only those.
	register(t, s, 14, &Registration{Node: Node{Node: "web1", Address: "10.0.0.1"},
		Checks: []*Check{{CheckID: "node-alive", Status: HealthCritical}}})
	rt = s.Read()
	if rt.ServiceIndex(nil, "web") != 14 || rt.ServiceIndex(nil, "db") != 12 {
		t.Fatalf("after a node check on web1: web %d db %d; want 14, 12", rt.ServiceIndex(nil, "web"), rt.ServiceIndex(nil, "db"))
	}
	if _, hs := rt.ServiceHealth(nil, "web"); len(hs[0].Checks) != 2 || hs[0].Checks[0].CheckID != "node-alive" || hs[0].Passing() {
		t.Fatalf("web1's checks = %+v", hs[0].Checks)
	}
	// Deregistering the last instance keeps the service's index.
	deregister(t, s, 15, &Deregistration{Node: "db1"})
	rt = s.Read()
	if idx, ins := rt.ServiceNodes(nil, "db"); idx != 15 || len(ins) != 0 {
		t.Fatalf("db after its node left: %d, %d instances; want 15, 0", idx, len(ins))
	}
	if idx, n, _ := rt.NodeServices(nil, "db1"); idx != 15 || n != nil {
		t.Fatalf("removed node = %d, %v; want its removal index 15", idx, n)
	}
	if _, checks := rt.ChecksInState(nil, HealthAny); len(checks) != 3 {
		t.Fatalf("checks left = %d, want 3", len(checks))
	}
}

func TestCatalogRefusalsChangeNothing(t *testing.T) {
	s := New()
	register(t, s, 1, instance("web1", "10.0.0.1", "web", "web-1", HealthPassing))
	for _, r := range []*Registration{
		{Node: Node{Node: "web1"}, Service: &Service{ID: "web-1", Service: "api"}},
		{Node: Node{Node: "web1"}, Checks: []*Check{{CheckID: "x", ServiceID: "nope"}}},
		{Node: Node{Node: ""}},
	} {
		w := s.Write()
		w.At(2)
		err := w.Register(r)
		w.Abort()
		if !errors.Is(err, ErrCatalog) {
			t.Fatalf("register %+v: err %v, want a catalog refusal", r, err)
		}
	}
	if idx := s.Read().CatalogIndex(); idx != 1 {
		t.Fatalf("catalog index %d after refusals, want 1", idx)
	}
}

func TestCatalogWakesOnlyTheServiceThatChanged(t *testing.T) {
	s := New()
	register(t, s, 1, instance("n1", "10.0.0.1", "web", "web", HealthPassing))
	register(t, s, 2, instance("n2", "10.0.0.2", "db", "db", HealthPassing))
	web, db := memdb.NewWatchSet(), memdb.NewWatchSet()
	s.Read().ServiceHealth(web, "web")
	s.Read().ServiceHealth(db, "db")
	register(t, s, 3, instance("n1", "10.0.0.1", "web", "web", HealthCritical))
	if fired(db) {
		t.Fatal("a check of web woke a watcher of db")
	}
	if !fired(web) {
		t.Fatal("a check of web did not wake web's watcher")
	}
	gone := memdb.NewWatchSet()
	s.Read().ServiceHealth(gone, "db")
	deregister(t, s, 4, &Deregistration{Node: "n2", ServiceID: "db"})
	if !fired(gone) {
		t.Fatal("removing db's last instance did not wake its watcher")
	}
}

func TestCatalogSnapshotRoundTrip(t *testing.T) {
	s := New()
	r := instance("web1", "10.0.0.1", "web", "web-1", HealthPassing)
	r.Node.Meta = map[string]string{"rack": "r1"}
	r.Service.Tags = []string{"prod"}
	register(t, s, 1, r)
	deregister(t, s, 2, &Deregistration{Node: "gone"})
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	fresh := New()
	if err := fresh.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	idx, hs := fresh.Read().ServiceHealth(nil, "web")
	if idx != 1 || len(hs) != 1 || hs[0].Node.Meta["rack"] != "r1" || hs[0].Service.Tags[0] != "prod" || len(hs[0].Checks) != 1 {
		t.Fatalf("restored web = %d, %+v", idx, hs)
	}
}
