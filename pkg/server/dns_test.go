package server_test

import (
	"testing"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	kvxdns "github.com/kvxproject/kvx/pkg/dns"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func dnsRcode(t *testing.T, addr, name string) (int, int) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, err := dns.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s at %s: %v", name, addr, err)
	}
	return r.Rcode, len(r.Answer)
}

// -dns-allow-stale=false: a follower answers DNS from its state while it
// is in touch with its leader, and SERVFAIL once it is not.
func TestDNSNoStaleFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	srvs, clients := cluster(t, func(o *server.Options) {
		o.DNS = &kvxdns.Config{Addr: "127.0.0.1:0"}
		o.DNSNoStale = true
	})
	leader := -1
	servertest.Eventually(t, "a leader", func() bool {
		for i, s := range srvs {
			if s.IsLeader() {
				leader = i
			}
		}
		return leader >= 0
	})
	_, err := clients[leader].Catalog().Register(&consulapi.CatalogRegistration{Node: "w1", Address: "10.0.0.1",
		Service: &consulapi.AgentService{ID: "web", Service: "web", Port: 80}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	addr := srvs[follower].DNSAddr()
	servertest.Eventually(t, "the follower answers web", func() bool {
		rc, n := dnsRcode(t, addr, "web.service.consul.")
		return rc == dns.RcodeSuccess && n == 1
	})
	for i, s := range srvs {
		if i != follower {
			s.Close()
		}
	}
	servertest.Eventually(t, "SERVFAIL from the follower alone", func() bool {
		rc, _ := dnsRcode(t, addr, "web.service.consul.")
		return rc == dns.RcodeServerFailure
	})
}

// With ACLs on, DNS answers follow the anonymous token (or the server's
// agent token): nothing for a service or node it cannot read, and the
// readable ones once a policy lets it read them.
func TestDNSFollowsACLs(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"), servertest.WithDNS())
	mgmt, _ := srv.Bootstrap(t)
	for _, r := range []struct{ node, addr, svc string }{{"n1", "10.7.0.1", "web"}, {"n2", "10.7.0.2", "db"}} {
		if _, err := mgmt.Catalog().Register(&consulapi.CatalogRegistration{Node: r.node, Address: r.addr,
			Service: &consulapi.AgentService{ID: r.svc, Service: r.svc, Port: 80}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"web.service.consul.", "db.service.consul.", "n1.node.consul."} {
		if _, n := dnsRcode(t, srv.DNSAddr(), name); n != 0 {
			t.Fatalf("%s answered %d records to the anonymous token, which reads nothing", name, n)
		}
	}
	p, _, err := mgmt.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: "dns", Rules: `service "web" { policy = "read" }
node "n1" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := mgmt.ACL().TokenUpdate(&consulapi.ACLToken{AccessorID: "00000000-0000-0000-0000-000000000002",
		Policies: []*consulapi.ACLTokenPolicyLink{{ID: p.ID}}}, nil); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "web and n1 answered", func() bool {
		_, web := dnsRcode(t, srv.DNSAddr(), "web.service.consul.")
		_, n1 := dnsRcode(t, srv.DNSAddr(), "n1.node.consul.")
		return web == 1 && n1 == 1
	})
	if _, n := dnsRcode(t, srv.DNSAddr(), "db.service.consul."); n != 0 {
		t.Fatalf("db answered %d records; the anonymous token reads only web", n)
	}
}
