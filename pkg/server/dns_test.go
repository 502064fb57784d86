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
