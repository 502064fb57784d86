package hostsgen_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/hostsgen"
	"github.com/kvxproject/kvx/pkg/servertest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

type reg struct {
	node, nodeAddr string
	meta           map[string]string
	id, service    string
	addr           string
	tags           []string
	status         string // of the service's check ("": none)
	nodeStatus     string // of the node's check ("": none)
}

func register(t *testing.T, c *consulapi.Client, regs ...reg) {
	t.Helper()
	for _, r := range regs {
		cr := &consulapi.CatalogRegistration{Node: r.node, Address: r.nodeAddr, NodeMeta: r.meta}
		if r.service != "" {
			cr.Service = &consulapi.AgentService{ID: r.id, Service: r.service, Address: r.addr, Tags: r.tags, Port: 80}
		}
		if r.status != "" {
			cr.Checks = append(cr.Checks, &consulapi.HealthCheck{Node: r.node, CheckID: "svc:" + r.id, Name: "svc", Status: r.status, ServiceID: r.id})
		}
		if r.nodeStatus != "" {
			cr.Checks = append(cr.Checks, &consulapi.HealthCheck{Node: r.node, CheckID: "serfHealth", Name: "serf", Status: r.nodeStatus})
		}
		if _, err := c.Catalog().Register(cr, nil); err != nil {
			t.Fatalf("register %+v: %v", r, err)
		}
	}
}

// fleet is the catalog of most cases: web on four nodes (one warning, one
// critical, one with its own address, one IPv6), api, and a node whose
// node check is critical.
func fleet(t *testing.T, c *consulapi.Client) {
	rack := func(r string) map[string]string { return map[string]string{"rack": r} }
	register(t, c,
		reg{node: "web-1", nodeAddr: "10.0.0.11", meta: rack("r1"), id: "web", service: "web", tags: []string{"primary", "v2"}, status: "passing"},
		reg{node: "web-2", nodeAddr: "10.0.0.12", meta: rack("r2"), id: "web", service: "web", tags: []string{"v2"}, status: "passing"},
		reg{node: "web-3", nodeAddr: "10.0.0.13", meta: rack("r1"), id: "web", service: "web", tags: []string{"v2"}, status: "warning"},
		reg{node: "web-4", nodeAddr: "10.0.0.14", meta: rack("r2"), id: "web", service: "web", status: "critical"},
		reg{node: "web-5", nodeAddr: "10.0.0.15", meta: rack("r1"), id: "web-own", service: "web", addr: "10.9.0.5", status: "passing"},
		reg{node: "web-6", nodeAddr: "fd00::16", meta: rack("r2"), id: "web", service: "web", tags: []string{"V2"}, status: "passing"},
		reg{node: "db-1", nodeAddr: "10.0.1.1", meta: rack("r1"), id: "api", service: "api", tags: []string{"internal"}},
		reg{node: "db-2", nodeAddr: "10.0.1.2", meta: rack("r2"), id: "api", service: "api", nodeStatus: "critical"},
		reg{node: "db-1", nodeAddr: "10.0.1.1", meta: rack("r1"), id: "cache", service: "Cache", status: "passing"},
	)
}

func generate(t *testing.T, c *consulapi.Client, o hostsgen.Options) hostsgen.Result {
	t.Helper()
	in, err := hostsgen.Fetch(context.Background(), c, o, true)
	if err != nil {
		t.Fatal(err)
	}
	return hostsgen.Generate(in, o)
}

func rejected(res hostsgen.Result) []byte {
	var b bytes.Buffer
	for _, r := range res.Rejected {
		fmt.Fprintln(&b, r.String())
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	srv := servertest.Start(t)
	fleet(t, srv.Client)
	for _, tc := range []struct {
		name string
		opts hostsgen.Options
	}{
		{"all.hosts", hostsgen.Options{}},
		{"nodes.hosts", hostsgen.Options{Nodes: true, Domain: "dc1.example."}},
		{"service-web.hosts", hostsgen.Options{Services: []string{"WEB"}}},
		{"tag-v2.hosts", hostsgen.Options{Tags: []string{"v2"}}},
		{"exclude-web.hosts", hostsgen.Options{ExcludeServices: []string{"web", "consul"}}},
		{"rack-r1.hosts", hostsgen.Options{NodeMeta: map[string]string{"rack": "r1"}, Nodes: true}},
		{"header.hosts", hostsgen.Options{Services: []string{"api"}, Header: time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := generate(t, srv.Client, tc.opts)
			golden(t, tc.name, res.Data)
			if len(res.Rejected) != 0 {
				t.Fatalf("rejected: %s", rejected(res))
			}
			if n := hostsgen.CountEntries(res.Data); n != res.Entries {
				t.Fatalf("Entries %d, the file has %d", res.Entries, n)
			}
		})
	}
	// The same catalog gives the same bytes.
	a, b := generate(t, srv.Client, hostsgen.Options{Nodes: true}), generate(t, srv.Client, hostsgen.Options{Nodes: true})
	if !bytes.Equal(a.Data, b.Data) {
		t.Fatal("two generations of one catalog differ")
	}
}

// Crafted registrations: names that are not DNS labels, addresses that
// are not IPs, whitespace, '#' and newlines are skipped, each named with
// its node and service, and the rest of the file is intact.
func TestGoldenRejected(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv.Client,
		reg{node: "ok-1", nodeAddr: "10.1.0.1", id: "web", service: "web", tags: []string{"good", "bad_tag", "x y", "evil\n6.6.6.6 bank.example", "#c", "-lead"}, status: "passing"},
		reg{node: "ok-2", nodeAddr: "10.1.0.2", id: "under", service: "bad_name", status: "passing"},
		reg{node: "ok-2", nodeAddr: "10.1.0.2", id: "hash", service: "a#b", status: "passing"},
		reg{node: "ok-3", nodeAddr: "10.1.0.3", id: "own", service: "web", addr: "10.1.0.30 bank.example", status: "passing"},
		reg{node: "ok-3", nodeAddr: "10.1.0.3", id: "host", service: "app", addr: "app.example.com", status: "passing"},
		reg{node: "ok-3", nodeAddr: "10.1.0.3", id: "zone", service: "app", addr: "fe80::1%eth0", status: "passing"},
		reg{node: "bad.node", nodeAddr: "10.1.0.4", id: "web", service: "web", status: "passing"},
		reg{node: "ok-5", nodeAddr: "not-an-ip", id: "web", service: "web", status: "passing"},
		reg{node: "ok-6", nodeAddr: "10.1.0.6\n6.6.6.6 bank.example", id: "web", service: "web", status: "passing"},
		reg{node: "ok-7", nodeAddr: "10.1.0.7", id: "long", service: strings.Repeat("a", 64), status: "passing"},
	)
	res := generate(t, srv.Client, hostsgen.Options{Nodes: true})
	golden(t, "rejected.hosts", res.Data)
	golden(t, "rejected.warnings", rejected(res))
	if bytes.Contains(res.Data, []byte("bank")) || bytes.Contains(res.Data, []byte("6.6.6.6")) {
		t.Fatalf("an injected entry got through:\n%s", res.Data)
	}
}

// The shrink guard, in file mode (the output file is the last published
// one) and in writer mode (a state file).
func TestShrinkGuard(t *testing.T) {
	srv := servertest.Start(t)
	for i := range 10 {
		register(t, srv.Client, reg{node: fmt.Sprintf("n%d", i), nodeAddr: fmt.Sprintf("10.2.0.%d", i+1), id: "web", service: "web", status: "passing"})
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "hosts")
	p := &hostsgen.Publisher{Output: out, MaxShrink: 0.5}
	full := generate(t, srv.Client, hostsgen.Options{ExcludeServices: []string{"consul"}})
	if pub, err := p.Publish(full); err != nil || !pub.Changed || pub.Last != -1 {
		t.Fatalf("first publish: %+v, %v", pub, err)
	}
	golden(t, "shrink-before.hosts", full.Data)
	// Unchanged: nothing written.
	if pub, err := p.Publish(full); err != nil || pub.Changed || pub.Last != 10 {
		t.Fatalf("same file: %+v, %v", pub, err)
	}
	// 5 of 10 lost: exactly 50%, allowed.
	for i := range 5 {
		register(t, srv.Client, reg{node: fmt.Sprintf("n%d", i), nodeAddr: fmt.Sprintf("10.2.0.%d", i+1), id: "web", service: "web", status: "critical"})
	}
	half := generate(t, srv.Client, hostsgen.Options{ExcludeServices: []string{"consul"}})
	if pub, err := p.Publish(half); err != nil || !pub.Changed || pub.Last != 10 {
		t.Fatalf("half: %+v, %v", pub, err)
	}
	// 4 of the 5 left lost (80%): refused, the file keeps its 5.
	for i := 5; i < 9; i++ {
		register(t, srv.Client, reg{node: fmt.Sprintf("n%d", i), nodeAddr: fmt.Sprintf("10.2.0.%d", i+1), id: "web", service: "web", status: "critical"})
	}
	small := generate(t, srv.Client, hostsgen.Options{ExcludeServices: []string{"consul"}})
	_, err := p.Publish(small)
	var se *hostsgen.ShrinkError
	if !errors.As(err, &se) || se.Last != 5 || se.Now != 1 {
		t.Fatalf("80%% shrink: %v, want a ShrinkError 5 -> 1", err)
	}
	golden(t, "shrink-refused.txt", []byte(err.Error()+"\n"))
	if got, _ := os.ReadFile(out); !bytes.Equal(got, half.Data) {
		t.Fatalf("the refused file replaced the last one:\n%s", got)
	}
	golden(t, "shrink-kept.hosts", half.Data)
	// -force publishes it.
	p.Force = true
	if pub, err := p.Publish(small); err != nil || !pub.Changed {
		t.Fatalf("forced: %+v, %v", pub, err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, small.Data) {
		t.Fatal("forced file not written")
	}

	// Writer mode: the state file remembers the last entries.
	var w bytes.Buffer
	sp := &hostsgen.Publisher{Writer: &w, State: filepath.Join(dir, "state", "hostsgen.json"), MaxShrink: 0.5}
	if pub, err := sp.Publish(full); err != nil || !pub.Changed {
		t.Fatalf("stdout first: %+v, %v", pub, err)
	}
	if w.String() != string(full.Data) {
		t.Fatalf("stdout: %q", w.String())
	}
	w.Reset()
	if _, err := sp.Publish(small); !errors.As(err, &se) || se.Last != 10 || w.Len() != 0 {
		t.Fatalf("stdout shrink: %v, wrote %q", err, w.String())
	}
	if pub, err := sp.Publish(full); err != nil || pub.Changed || w.String() != string(full.Data) {
		t.Fatalf("stdout same again: %+v, %v", pub, err)
	}
}

// A header's timestamp does not make a file "changed".
func TestHeaderIgnoredWhenComparing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "hosts")
	in := []hostsgen.Instance{{Node: "n", NodeAddress: "10.0.0.1", ID: "w", Service: "web", Passing: true}}
	p := &hostsgen.Publisher{Output: out, MaxShrink: 0.5}
	first := hostsgen.Generate(in, hostsgen.Options{Header: time.Unix(1, 0)})
	if pub, err := p.Publish(first); err != nil || !pub.Changed {
		t.Fatal(pub, err)
	}
	if pub, err := p.Publish(hostsgen.Generate(in, hostsgen.Options{Header: time.Unix(2, 0)})); err != nil || pub.Changed {
		t.Fatalf("a new header alone rewrote the file: %+v %v", pub, err)
	}
}
