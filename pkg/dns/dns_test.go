package dns_test

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	kvxdns "github.com/kvxproject/kvx/pkg/dns"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// register puts a node, optionally one service on it with one check of the
// given status, into the catalog through the real API client.
func register(t *testing.T, c *consulapi.Client, node, addr string, svc *consulapi.AgentService, status string) {
	t.Helper()
	reg := &consulapi.CatalogRegistration{Node: node, Address: addr, Service: svc, NodeMeta: map[string]string{"rack": "r1"}}
	if svc != nil && status != "" {
		reg.Checks = consulapi.HealthChecks{{Node: node, CheckID: "check-" + svc.ID, Name: "check", Status: status, ServiceID: svc.ID}}
	}
	if _, err := c.Catalog().Register(reg, nil); err != nil {
		t.Fatalf("register %s/%v: %v", node, svc, err)
	}
}

// fixture registers:
//
//	web on n1 (10.0.0.1, tags primary v1, passing), n2 (10.0.0.2, v1, passing),
//	n3 (10.0.0.3, warning), n4 (10.0.0.4, critical);
//	api on n1 with its own address 10.1.0.1, port 9000;
//	v6 on n6 (fd00::6);
//	apx on n2 (passing).
func fixture(t *testing.T, c *consulapi.Client) {
	register(t, c, "n1", "10.0.0.1", &consulapi.AgentService{ID: "web1", Service: "web", Tags: []string{"primary", "v1"}, Port: 80}, "passing")
	register(t, c, "n2", "10.0.0.2", &consulapi.AgentService{ID: "web2", Service: "web", Tags: []string{"v1"}, Port: 81}, "passing")
	register(t, c, "n3", "10.0.0.3", &consulapi.AgentService{ID: "web3", Service: "web", Port: 82}, "warning")
	register(t, c, "n4", "10.0.0.4", &consulapi.AgentService{ID: "web4", Service: "web", Port: 83}, "critical")
	register(t, c, "n1", "10.0.0.1", &consulapi.AgentService{ID: "api1", Service: "api", Address: "10.1.0.1", Port: 9000}, "passing")
	register(t, c, "n6", "fd00::6", &consulapi.AgentService{ID: "v61", Service: "v6", Port: 80}, "passing")
	register(t, c, "n2", "10.0.0.2", &consulapi.AgentService{ID: "apx1", Service: "apx", Port: 80}, "passing")
}

func start(t *testing.T, modify ...func(*kvxdns.Config)) *servertest.Server {
	t.Helper()
	srv := servertest.Start(t, servertest.WithDNS(modify...))
	if srv.DNSAddr() == "" {
		t.Fatal("no DNS address")
	}
	fixture(t, srv.Client)
	return srv
}

func query(t *testing.T, addr, name string, qtype uint16, opts ...func(*dns.Msg, *dns.Client)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: "udp", Timeout: 10 * time.Second}
	for _, o := range opts {
		o(m, c)
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}

func overTCP(_ *dns.Msg, c *dns.Client) { c.Net = "tcp" }

func edns(size uint16) func(*dns.Msg, *dns.Client) {
	return func(m *dns.Msg, _ *dns.Client) { m.SetEdns0(size, false) }
}

// values lists the answer records' data (A/AAAA addresses, SRV
// "port target", PTR names, CNAME targets), sorted.
func values(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.AAAA:
			out = append(out, r.AAAA.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %s", r.Port, r.Target))
		case *dns.PTR:
			out = append(out, r.Ptr)
		case *dns.CNAME:
			out = append(out, r.Target)
		case *dns.TXT:
			out = append(out, strings.Join(r.Txt, " "))
		case *dns.OPT:
		default:
			out = append(out, rr.String())
		}
	}
	sort.Strings(out)
	return out
}

func expect(t *testing.T, r *dns.Msg, rcode int, want ...string) {
	t.Helper()
	if r.Rcode != rcode {
		t.Fatalf("%s: rcode %s, want %s\n%v", r.Question[0].Name, dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode], r)
	}
	if got := values(r.Answer); !slices.Equal(got, want) {
		t.Fatalf("%s %s: answers %q, want %q", r.Question[0].Name, dns.TypeToString[r.Question[0].Qtype], got, want)
	}
	if len(want) == 0 {
		if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA || r.Ns[0].Header().Name != "consul." {
			t.Fatalf("%s: want the SOA of consul. in the authority section, got %v", r.Question[0].Name, r.Ns)
		}
	}
}

func TestEveryNameForm(t *testing.T) {
	srv := start(t)
	a := srv.DNSAddr()
	for _, name := range []string{"web.service.consul.", "WEB.Service.consul.", "web.service.dc1.consul."} {
		r := query(t, a, name, dns.TypeA)
		expect(t, r, dns.RcodeSuccess, "10.0.0.1", "10.0.0.2")
		if !r.Authoritative || r.Answer[0].Header().Ttl != 0 {
			t.Fatalf("%s: authoritative %v, ttl %d: want true, 0", name, r.Authoritative, r.Answer[0].Header().Ttl)
		}
	}
	expect(t, query(t, a, "primary.web.service.consul.", dns.TypeA), dns.RcodeSuccess, "10.0.0.1")
	expect(t, query(t, a, "v1.web.service.dc1.consul.", dns.TypeA), dns.RcodeSuccess, "10.0.0.1", "10.0.0.2")
	expect(t, query(t, a, "web.service.consul.", dns.TypeANY), dns.RcodeSuccess, "10.0.0.1", "10.0.0.2")

	// SRV, with the targets' addresses in the additional section.
	r := query(t, a, "_web._primary.service.consul.", dns.TypeSRV)
	expect(t, r, dns.RcodeSuccess, "80 n1.node.dc1.consul.")
	if got := values(r.Extra); !slices.Equal(got, []string{"10.0.0.1"}) || r.Extra[0].Header().Name != "n1.node.dc1.consul." {
		t.Fatalf("SRV extra: %v", r.Extra)
	}
	r = query(t, a, "_web._tcp.service.consul.", dns.TypeSRV)
	expect(t, r, dns.RcodeSuccess, "80 n1.node.dc1.consul.", "81 n2.node.dc1.consul.")
	if got := values(r.Extra); !slices.Equal(got, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Fatalf("SRV extra: %v", got)
	}
	expect(t, query(t, a, "web.service.consul.", dns.TypeSRV), dns.RcodeSuccess, "80 n1.node.dc1.consul.", "81 n2.node.dc1.consul.")

	// An instance with an address of its own: A is that address, the SRV
	// target is its .addr. name, which resolves.
	expect(t, query(t, a, "api.service.consul.", dns.TypeA), dns.RcodeSuccess, "10.1.0.1")
	r = query(t, a, "api.service.consul.", dns.TypeSRV)
	expect(t, r, dns.RcodeSuccess, "9000 0a010001.addr.dc1.consul.")
	if got := values(r.Extra); !slices.Equal(got, []string{"10.1.0.1"}) {
		t.Fatalf("SRV extra: %v", got)
	}
	expect(t, query(t, a, "0a010001.addr.dc1.consul.", dns.TypeA), dns.RcodeSuccess, "10.1.0.1")

	// IPv6.
	expect(t, query(t, a, "v6.service.consul.", dns.TypeAAAA), dns.RcodeSuccess, "fd00::6")
	expect(t, query(t, a, "n6.node.consul.", dns.TypeAAAA), dns.RcodeSuccess, "fd00::6")

	// Nodes.
	expect(t, query(t, a, "n1.node.consul.", dns.TypeA), dns.RcodeSuccess, "10.0.0.1")
	expect(t, query(t, a, "n4.node.dc1.consul.", dns.TypeA), dns.RcodeSuccess, "10.0.0.4")
	expect(t, query(t, a, "n1.node.consul.", dns.TypeTXT), dns.RcodeSuccess, "rack=r1")

	// PTR.
	expect(t, query(t, a, "2.0.0.10.in-addr.arpa.", dns.TypePTR), dns.RcodeSuccess, "n2.node.dc1.consul.")
	ptr6, _ := dns.ReverseAddr("fd00::6")
	expect(t, query(t, a, ptr6, dns.TypePTR), dns.RcodeSuccess, "n6.node.dc1.consul.")
	// The same over TCP.
	expect(t, query(t, a, "web.service.consul.", dns.TypeA, overTCP), dns.RcodeSuccess, "10.0.0.1", "10.0.0.2")
}

func TestUnknownNamesAndTypes(t *testing.T) {
	srv := start(t)
	a := srv.DNSAddr()
	for _, name := range []string{
		"nope.service.consul.", "nope.node.consul.", "web.service.dc2.consul.", "n1.node.dc2.consul.",
		"web.bogus.consul.", "x.y.z.web.service.consul.", "other.web.service.consul.", "zz.addr.consul.",
		"web4.service.consul.", // its only instance... does not exist: web4 is an ID
	} {
		r := query(t, a, name, dns.TypeA)
		expect(t, r, dns.RcodeNameError)
		if !r.Authoritative {
			t.Fatalf("%s: not authoritative", name)
		}
	}
	// A PTR no node has, without recursors.
	expect(t, query(t, a, "9.9.9.10.in-addr.arpa.", dns.TypePTR), dns.RcodeNameError)
	// Known names without the type asked: NOERROR, no answer, the SOA.
	expect(t, query(t, a, "web.service.consul.", dns.TypeAAAA), dns.RcodeSuccess)
	expect(t, query(t, a, "web.service.consul.", dns.TypeMX), dns.RcodeSuccess)
	expect(t, query(t, a, "n1.node.consul.", dns.TypeAAAA), dns.RcodeSuccess)
	expect(t, query(t, a, "v6.service.consul.", dns.TypeA), dns.RcodeSuccess)
	// The domain itself: its SOA; no NS.
	if r := query(t, a, "consul.", dns.TypeSOA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Ns != "ns.consul." {
		t.Fatalf("consul. SOA: %v", r)
	}
	expect(t, query(t, a, "consul.", dns.TypeNS), dns.RcodeSuccess)
	// Names outside the domain without recursors: REFUSED.
	if r := query(t, a, "example.org.", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("example.org without recursors: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func TestOnlyPassing(t *testing.T) {
	srv := start(t, func(c *kvxdns.Config) { c.AnswerWarning = true })
	a := srv.DNSAddr()
	// Warning answered, critical never.
	expect(t, query(t, a, "web.service.consul.", dns.TypeA), dns.RcodeSuccess, "10.0.0.1", "10.0.0.2", "10.0.0.3")
	expect(t, query(t, a, "web.service.consul.", dns.TypeSRV), dns.RcodeSuccess,
		"80 n1.node.dc1.consul.", "81 n2.node.dc1.consul.", "82 n3.node.dc1.consul.")
}

func TestTTLs(t *testing.T) {
	srv := start(t, func(c *kvxdns.Config) {
		c.NodeTTL = 10 * time.Second
		c.ServiceTTL = map[string]time.Duration{"web": 30 * time.Second, "*": 5 * time.Second, "ap*": 7 * time.Second, "apx": 8 * time.Second}
	})
	a := srv.DNSAddr()
	for name, want := range map[string]uint32{
		"web.service.consul.": 30, "api.service.consul.": 7, "apx.service.consul.": 8, "v6.service.consul.": 5,
		"n1.node.consul.": 10, "2.0.0.10.in-addr.arpa.": 10, "_web._tcp.service.consul.": 30,
	} {
		qtype := dns.TypeANY
		if strings.HasSuffix(name, "arpa.") {
			qtype = dns.TypePTR
		} else if strings.HasPrefix(name, "_") {
			qtype = dns.TypeSRV
		}
		r := query(t, a, name, qtype)
		if len(r.Answer) == 0 {
			t.Fatalf("%s: no answer", name)
		}
		for _, rr := range append(r.Answer, r.Extra...) {
			if rr.Header().Ttl != want {
				t.Errorf("%s: %s has TTL %d, want %d", name, rr.Header().Name, rr.Header().Ttl, want)
			}
		}
	}
}

// big registers n instances of service big on nodes with long names, so
// that a few SRV records fill 512 bytes.
func big(t *testing.T, c *consulapi.Client, n int) []string {
	var addrs []string
	for i := range n {
		node := fmt.Sprintf("a-node-with-a-long-enough-name-%02d", i)
		addr := fmt.Sprintf("10.2.0.%d", i+1)
		register(t, c, node, addr, &consulapi.AgentService{ID: "big", Service: "big", Port: 1000 + i}, "passing")
		addrs = append(addrs, addr)
	}
	sort.Strings(addrs)
	return addrs
}

func TestTruncationAndTCP(t *testing.T) {
	srv := start(t, func(c *kvxdns.Config) { c.UDPAnswerLimit = 8 })
	a := srv.DNSAddr()
	all := big(t, srv.Client, 20)

	// A over UDP without EDNS0: cut to the answer limit, no TC.
	r := query(t, a, "big.service.consul.", dns.TypeA)
	if len(r.Answer) != 8 || r.Truncated {
		t.Fatalf("A over UDP: %d answers, TC %v: want 8, false", len(r.Answer), r.Truncated)
	}
	// With EDNS0 4096 the limit does not apply: all 20 fit.
	r = query(t, a, "big.service.consul.", dns.TypeA, edns(4096))
	expect(t, r, dns.RcodeSuccess, all...)
	if r.Truncated || r.IsEdns0() == nil {
		t.Fatalf("A with EDNS0: TC %v, OPT %v", r.Truncated, r.IsEdns0())
	}

	// SRV: 8 records and their A records exceed 512 bytes: truncated, TC.
	r = query(t, a, "big.service.consul.", dns.TypeSRV)
	if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= 8 {
		t.Fatalf("SRV over UDP: %d answers, TC %v: want fewer than 8, TC", len(r.Answer), r.Truncated)
	}
	if r.Compress = true; r.Len() > 512 {
		size := r.Len()
		t.Fatalf("SRV over UDP: %d bytes", size)
	}
	if len(r.Extra) != len(r.Answer) {
		t.Fatalf("SRV over UDP: %d extras for %d answers", len(r.Extra), len(r.Answer))
	}
	// With EDNS0 1232, more but not all, TC.
	r = query(t, a, "big.service.consul.", dns.TypeSRV, edns(1232))
	if !r.Truncated || len(r.Answer) >= 20 || len(r.Answer) <= 8 {
		t.Fatalf("SRV with EDNS0 1232: %d answers, TC %v", len(r.Answer), r.Truncated)
	}
	// The retry over TCP gets them all, with every target's address.
	r = query(t, a, "big.service.consul.", dns.TypeSRV, overTCP)
	if r.Truncated || len(r.Answer) != 20 || len(r.Extra) != 20 {
		t.Fatalf("SRV over TCP: %d answers, %d extras, TC %v", len(r.Answer), len(r.Extra), r.Truncated)
	}
	if got := values(r.Extra); !slices.Equal(got, all) {
		t.Fatalf("SRV over TCP extras: %v", got)
	}

	// A client claiming a 65535-byte buffer gets at most 4096 bytes over UDP.
	for i := range 120 {
		register(t, srv.Client, fmt.Sprintf("a-node-with-a-long-enough-name-%03d", i), fmt.Sprintf("10.3.%d.%d", i/250, i%250+1),
			&consulapi.AgentService{ID: "huge", Service: "huge", Port: 80}, "passing")
	}
	r = query(t, a, "huge.service.consul.", dns.TypeSRV, edns(65535))
	if r.Compress = true; !r.Truncated || r.Len() > 4096 || r.Len() < 3000 || r.IsEdns0().UDPSize() != 4096 {
		t.Fatalf("SRV with EDNS0 65535: %d bytes, TC %v, OPT %v; want at most 4096, TC", r.Len(), r.Truncated, r.IsEdns0())
	}
	if r := query(t, a, "huge.service.consul.", dns.TypeSRV, overTCP); len(r.Answer) != 120 {
		t.Fatalf("SRV over TCP: %d answers, want 120", len(r.Answer))
	}

	// Default limit 3.
	srv3 := start(t)
	big(t, srv3.Client, 20)
	if r := query(t, srv3.DNSAddr(), "big.service.consul.", dns.TypeA); len(r.Answer) != 3 || r.Truncated {
		t.Fatalf("default limit: %d answers, TC %v", len(r.Answer), r.Truncated)
	}
}

func TestAnswersAreShuffled(t *testing.T) {
	srv := start(t)
	big(t, srv.Client, 20)
	firsts := map[string]bool{}
	for range 50 {
		r := query(t, srv.DNSAddr(), "big.service.consul.", dns.TypeA, edns(4096))
		firsts[r.Answer[0].(*dns.A).A.String()] = true
	}
	if len(firsts) < 2 {
		t.Fatalf("50 answers all started with %v", firsts)
	}
}

func TestCriticalCheckRemovesAnswer(t *testing.T) {
	srv := start(t)
	a := srv.DNSAddr()
	expect(t, query(t, a, "web.service.consul.", dns.TypeA), dns.RcodeSuccess, "10.0.0.1", "10.0.0.2")
	register(t, srv.Client, "n2", "10.0.0.2", &consulapi.AgentService{ID: "web2", Service: "web", Tags: []string{"v1"}, Port: 81}, "critical")
	servertest.Eventually(t, "n2 out of web's answer", func() bool {
		return slices.Equal(values(query(t, a, "web.service.consul.", dns.TypeA).Answer), []string{"10.0.0.1"})
	})
	// A node check going critical removes every instance on the node.
	if _, err := srv.Client.Catalog().Register(&consulapi.CatalogRegistration{Node: "n1", Address: "10.0.0.1",
		Checks: consulapi.HealthChecks{{Node: "n1", CheckID: "serfHealth", Name: "serf", Status: "critical"}}}, nil); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "web gone", func() bool {
		return query(t, a, "web.service.consul.", dns.TypeA).Rcode == dns.RcodeNameError
	})
}

func TestRecursors(t *testing.T) {
	// A DNS server on loopback that knows example.org.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstream := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		if req.Question[0].Name == "example.org." {
			rr, _ := dns.NewRR("example.org. 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go upstream.ActivateAndServe()
	t.Cleanup(func() { upstream.Shutdown() })

	// The first recursor is dead (a closed port): the second answers.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	srv := start(t, func(c *kvxdns.Config) {
		c.Recursors = []string{deadAddr, pc.LocalAddr().String()}
		c.RecursorTimeout = 500 * time.Millisecond
	})
	a := srv.DNSAddr()
	r := query(t, a, "example.org.", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || !slices.Equal(values(r.Answer), []string{"192.0.2.1"}) || !r.RecursionAvailable {
		t.Fatalf("example.org through the recursor: %v", r)
	}
	if r := query(t, a, "nothing.example.org.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("nothing.example.org: %s, want the recursor's NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	// Names in the domain are still answered locally.
	expect(t, query(t, a, "web.service.consul.", dns.TypeA), dns.RcodeSuccess, "10.0.0.1", "10.0.0.2")
}

func TestBadConfigRefused(t *testing.T) {
	for _, c := range []kvxdns.Config{
		{Datacenter: "dc1", UDPAnswerLimit: 9},
		{Datacenter: "dc1", Domain: "bad domain"},
		{Datacenter: "dc1", ServiceTTL: map[string]time.Duration{"w*b": time.Second}},
		{Datacenter: "dc1", Recursors: []string{"1.2.3.4:notaport"}},
		{Datacenter: "dc1", Addr: "nonsense"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
	c := kvxdns.Config{Datacenter: "dc1", Recursors: []string{"1.2.3.4", "[::1]"}}
	if err := c.Validate(); err != nil || !slices.Equal(c.Recursors, []string{"1.2.3.4:53", "[::1]:53"}) {
		t.Fatalf("recursors %v, %v", c.Recursors, err)
	}
}

// DNSOptional (kvx server's built-in address): a taken address means a
// server without DNS, not a server that does not start; an address given
// explicitly must be free.
func TestDNSAddressInUse(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	taken := pc.LocalAddr().String()
	srv := servertest.Start(t, servertest.WithDNS(func(c *kvxdns.Config) { c.Addr = taken }), func(o *server.Options) { o.DNSOptional = true })
	if srv.DNSAddr() != "" {
		t.Fatalf("DNS on %s, which was taken", srv.DNSAddr())
	}
	_, err = server.New(server.Options{Dev: true, NodeName: "x", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", DNS: &kvxdns.Config{Addr: taken}})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("explicit taken address: %v", err)
	}
}
