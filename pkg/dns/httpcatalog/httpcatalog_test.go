package httpcatalog_test

import (
	"context"
	"net"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/kvxproject/kvx/pkg/client"
	kvxdns "github.com/kvxproject/kvx/pkg/dns"
	"github.com/kvxproject/kvx/pkg/dns/httpcatalog"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func register(t *testing.T, c *consulapi.Client, node, addr, id, status string) {
	t.Helper()
	_, err := c.Catalog().Register(&consulapi.CatalogRegistration{Node: node, Address: addr,
		Service: &consulapi.AgentService{ID: id, Service: "web", Port: 80},
		Checks:  consulapi.HealthChecks{{Node: node, CheckID: "c-" + id, Name: "c", Status: status, ServiceID: id}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func answers(t *testing.T, addr, name string, qtype uint16) (int, []string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, err := dns.Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.PTR:
			out = append(out, rr.Ptr)
		}
	}
	sort.Strings(out)
	return r.Rcode, out
}

// An agent's DNS: the servers' catalog through their HTTP API, kept
// current by blocking queries.
func TestServeOverHTTP(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv.Client, "n1", "10.0.0.1", "web1", "passing")
	register(t, srv.Client, "n2", "10.0.0.2", "web2", "passing")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := httpcatalog.Serve(ctx, kvxdns.Config{Addr: "127.0.0.1:0"},
		httpcatalog.Options{Client: client.Options{Address: srv.HTTPAddr()}, AllowStale: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := d.Addr()
	if rc, got := answers(t, a, "web.service.dc1.consul.", dns.TypeA); rc != dns.RcodeSuccess || !slices.Equal(got, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Fatalf("web: %s %v", dns.RcodeToString[rc], got)
	}
	if rc, got := answers(t, a, "n2.node.consul.", dns.TypeA); rc != dns.RcodeSuccess || !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Fatalf("n2: %s %v", dns.RcodeToString[rc], got)
	}
	if rc, got := answers(t, a, "1.0.0.10.in-addr.arpa.", dns.TypePTR); rc != dns.RcodeSuccess || !slices.Equal(got, []string{"n1.node.dc1.consul."}) {
		t.Fatalf("PTR: %s %v", dns.RcodeToString[rc], got)
	}
	if rc, _ := answers(t, a, "nope.service.consul.", dns.TypeA); rc != dns.RcodeNameError {
		t.Fatalf("nope: %s", dns.RcodeToString[rc])
	}
	// A check going critical reaches the view through the blocking query.
	register(t, srv.Client, "n2", "10.0.0.2", "web2", "critical")
	servertest.Eventually(t, "n2 out of the answer", func() bool {
		_, got := answers(t, a, "web.service.consul.", dns.TypeA)
		return slices.Equal(got, []string{"10.0.0.1"})
	})
	// A new node reaches the node view.
	register(t, srv.Client, "n3", "10.0.0.3", "web3", "passing")
	servertest.Eventually(t, "n3 known", func() bool {
		rc, got := answers(t, a, "n3.node.consul.", dns.TypeA)
		return rc == dns.RcodeSuccess && slices.Equal(got, []string{"10.0.0.3"})
	})
}

// Servers that do not answer: SERVFAIL, not a hang.
func TestServersDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := httpcatalog.Serve(ctx, kvxdns.Config{Addr: "127.0.0.1:0", Datacenter: "dc1"},
		httpcatalog.Options{Client: client.Options{Address: "127.0.0.1:1"}, FirstFetch: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if rc, _ := answers(t, d.Addr(), "web.service.consul.", dns.TypeA); rc != dns.RcodeServerFailure {
		t.Fatalf("servers down: %s, want SERVFAIL", dns.RcodeToString[rc])
	}
}

// After its context ends, a Catalog answers at once with an error.
func TestStoppedCatalog(t *testing.T) {
	srv := servertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := httpcatalog.New(ctx, httpcatalog.Options{Client: client.Options{Address: srv.HTTPAddr()}, FirstFetch: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ServiceInstances(context.Background(), "consul"); err != nil {
		t.Fatal(err)
	}
	cancel()
	servertest.Eventually(t, "an error once stopped", func() bool {
		_, err := c.ServiceInstances(context.Background(), "other")
		return err != nil
	})
}

// Several servers: reads move to the next when one fails, and the first
// query does not fail because the first server is down.
func TestServersFailover(t *testing.T) {
	b := servertest.Start(t)
	register(t, b.Client, "n1", "10.0.0.1", "web1", "passing")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := httpcatalog.Serve(ctx, kvxdns.Config{Addr: "127.0.0.1:0"},
		httpcatalog.Options{Servers: []string{dead, b.HTTPAddr()}, AllowStale: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if rc, got := answers(t, d.Addr(), "web.service.consul.", dns.TypeA); rc != dns.RcodeSuccess || !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Fatalf("web with the first server down: %s %v", dns.RcodeToString[rc], got)
	}
}

// The agent's way: a Listener reading through the owner's Call (here: the
// servers in turn, the first one down), bound first, then run; it learns
// the datacenter from the servers.
func TestListenerThroughCall(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv.Client, "n1", "10.0.0.1", "web1", "passing")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	var apis []*consulapi.Client
	for _, a := range []string{dead, srv.HTTPAddr()} {
		c, err := client.New(client.Options{Address: a})
		if err != nil {
			t.Fatal(err)
		}
		apis = append(apis, c)
	}
	var calls atomic.Int64
	call := func(ctx context.Context, f func(*consulapi.Client) error) error {
		calls.Add(1)
		var err error
		for _, api := range apis {
			if err = f(api); err == nil || ctx.Err() != nil {
				return err
			}
		}
		return err
	}
	l, err := httpcatalog.NewListener(kvxdns.Config{Addr: "127.0.0.1:0"}, httpcatalog.Options{Call: call, AllowStale: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Bind(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	servertest.Eventually(t, "web through the listener", func() bool {
		rc, got := answers(t, l.Addr(), "web.service.dc1.consul.", dns.TypeA)
		return rc == dns.RcodeSuccess && slices.Equal(got, []string{"10.0.0.1"})
	})
	if calls.Load() == 0 {
		t.Fatal("the reads did not go through Call")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The port is free again.
	pc, err := net.ListenPacket("udp", l.Addr())
	if err != nil {
		t.Fatalf("the port is still held after Run: %v", err)
	}
	pc.Close()
}

func TestListenerAddressTaken(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	taken := pc.LocalAddr().String()
	opts := httpcatalog.Options{Client: client.Options{Address: "127.0.0.1:1"}}
	// Optional: a warning, no DNS, Run waits for the end.
	l, err := httpcatalog.NewListener(kvxdns.Config{Addr: taken, Datacenter: "dc1"}, opts, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Bind(); err != nil || l.Addr() != "" {
		t.Fatalf("optional on a taken address: %v, %q", err, l.Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// Not optional: Bind fails.
	l, err = httpcatalog.NewListener(kvxdns.Config{Addr: taken, Datacenter: "dc1"}, opts, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Bind(); err == nil {
		t.Fatal("a taken address was bound")
	}
	// Bound, never run: Close frees the port.
	l, err = httpcatalog.NewListener(kvxdns.Config{Addr: "127.0.0.1:0", Datacenter: "dc1"}, opts, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Bind(); err != nil {
		t.Fatal(err)
	}
	addr := l.Addr()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("Close did not free %s: %v", addr, err)
	}
	again.Close()
}
