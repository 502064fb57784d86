package dns_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// BenchmarkUDPQuery: A queries for a 20-instance service over UDP against
// a server's DNS, from parallel clients each on its own socket. The README's
// figures come from dnsperf against kvx server (see README, Figures); this
// one is for profiles: go test -bench UDPQuery -cpuprofile.
func BenchmarkUDPQuery(b *testing.B) {
	srv := servertest.Start(b, servertest.WithDNS())
	for i := range 20 {
		_, err := srv.Client.Catalog().Register(&consulapi.CatalogRegistration{Node: fmt.Sprintf("node-%02d", i), Address: fmt.Sprintf("10.20.0.%d", i+1),
			Service: &consulapi.AgentService{ID: "web", Service: "web", Port: 80},
			Checks:  consulapi.HealthChecks{{CheckID: "web", Name: "web", Status: "passing", ServiceID: "web"}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
	m := new(dns.Msg)
	m.SetQuestion("web.service.consul.", dns.TypeA)
	query, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	addr, _ := net.ResolveUDPAddr("udp", srv.DNSAddr())
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		for pb.Next() {
			if _, err := conn.Write(query); err != nil {
				b.Error(err)
				return
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(buf)
			if err != nil || n < 12 {
				b.Errorf("read: %d bytes, %v", n, err)
				return
			}
		}
	})
}
