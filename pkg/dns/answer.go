package dns

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Answer builds the response to req received over network ("udp" or
// "tcp"), trimmed for UDP.
func (s *Server) Answer(ctx context.Context, req *dns.Msg, network string) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Compress = true
	resp.RecursionAvailable = len(s.cfg.Recursors) > 0
	if req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return resp
	}
	if len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeFormatError)
		return resp
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	// Over UDP without EDNS0 (or with 512 bytes) trim keeps UDPAnswerLimit
	// records of the shuffled answer: build no more than those.
	limit := 0
	if edns := req.IsEdns0(); network == "udp" && (edns == nil || edns.UDPSize() <= dns.MinMsgSize) {
		limit = s.cfg.UDPAnswerLimit
	}
	switch {
	case dns.IsSubDomain(s.cfg.Domain, name):
		resp.Authoritative = true
		s.inDomain(ctx, resp, q.Qtype, name, limit)
	case q.Qtype == dns.TypePTR && (dns.IsSubDomain("in-addr.arpa.", name) || dns.IsSubDomain("ip6.arpa.", name)):
		if !s.ptr(ctx, resp, name) {
			if len(s.cfg.Recursors) > 0 {
				return s.recurse(req, network)
			}
			s.nxdomain(resp)
		}
	default:
		return s.recurse(req, network)
	}
	if edns := req.IsEdns0(); edns != nil {
		resp.SetEdns0(min(max(edns.UDPSize(), dns.MinMsgSize), maxEDNSSize), false)
	}
	trim(req, resp, network, s.cfg.UDPAnswerLimit)
	return resp
}

func (s *Server) soa() dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.cfg.Domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET},
		Ns:      "ns." + s.cfg.Domain,
		Mbox:    "hostmaster." + s.cfg.Domain,
		Serial:  uint32(time.Now().Unix()),
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  0,
	}
}

// nxdomain: the name does not exist.
func (s *Server) nxdomain(resp *dns.Msg) {
	resp.Rcode = dns.RcodeNameError
	resp.Answer, resp.Extra = nil, nil
	resp.Ns = []dns.RR{s.soa()}
}

// nodata: the name exists, not with the type asked.
func (s *Server) nodata(resp *dns.Msg) {
	resp.Rcode = dns.RcodeSuccess
	resp.Ns = []dns.RR{s.soa()}
}

func (s *Server) servfail(resp *dns.Msg, what string, err error) {
	// At most one warning every 10 s: a failing catalog under load must
	// not flood the log.
	now := time.Now().UnixNano()
	if last := s.lastWarn.Load(); now-last > int64(10*time.Second) && s.lastWarn.CompareAndSwap(last, now) {
		s.logger.Warn("dns: catalog read failed, answering SERVFAIL", "query", what, "err", err)
	}
	resp.Rcode = dns.RcodeServerFailure
	resp.Answer, resp.Extra, resp.Ns = nil, nil, nil
}

// inDomain answers a name under the domain.
func (s *Server) inDomain(ctx context.Context, resp *dns.Msg, qtype uint16, name string, limit int) {
	labels := dns.SplitDomainName(name)
	labels = labels[:len(labels)-s.domainLabels]
	if len(labels) == 0 {
		if qtype == dns.TypeSOA || qtype == dns.TypeANY {
			resp.Answer = []dns.RR{s.soa()}
			return
		}
		s.nodata(resp)
		return
	}
	// <...>.<kind>[.<dc>]
	n := len(labels)
	kind, rest := labels[n-1], labels[:n-1]
	if !isKind(kind) && n >= 2 && isKind(labels[n-2]) {
		if labels[n-1] != s.dc {
			s.nxdomain(resp) // kvx knows one datacenter
			return
		}
		kind, rest = labels[n-2], labels[:n-2]
	}
	switch {
	case kind == "service" && len(rest) == 1:
		s.service(ctx, resp, qtype, name, rest[0], "", limit)
	case kind == "service" && len(rest) == 2 && strings.HasPrefix(rest[0], "_") && strings.HasPrefix(rest[1], "_"):
		tag := rest[1][1:]
		if tag == "tcp" { // _web._tcp: any instance, as RFC 2782's protocol label
			tag = ""
		}
		s.service(ctx, resp, qtype, name, rest[0][1:], tag, limit)
	case kind == "service" && len(rest) == 2:
		s.service(ctx, resp, qtype, name, rest[1], rest[0], limit)
	case kind == "node" && len(rest) >= 1:
		s.node(ctx, resp, qtype, name, strings.Join(rest, "."))
	case kind == "addr" && len(rest) == 1:
		s.addrLookup(resp, qtype, name, rest[0])
	default:
		s.nxdomain(resp)
	}
}

func isKind(l string) bool { return l == "service" || l == "node" || l == "addr" }

// healthy reports whether an instance is answered.
func (s *Server) healthy(in *Instance) bool {
	return in.Status == StatusPassing || in.Status == StatusWarning && s.cfg.AnswerWarning
}

// service answers a service query; with limit > 0, with at most limit
// records.
func (s *Server) service(ctx context.Context, resp *dns.Msg, qtype uint16, qname, service, tag string, limit int) {
	all, err := s.cat.ServiceInstances(ctx, service)
	if err != nil {
		s.servfail(resp, qname, err)
		return
	}
	instances := make([]*Instance, 0, len(all))
	for i := range all {
		in := &all[i]
		if s.healthy(in) && (tag == "" || slices.ContainsFunc(in.Tags, func(t string) bool { return strings.EqualFold(t, tag) })) {
			instances = append(instances, in)
		}
	}
	if len(instances) == 0 {
		s.nxdomain(resp)
		return
	}
	rand.Shuffle(len(instances), func(i, j int) { instances[i], instances[j] = instances[j], instances[i] })
	ttl := s.cfg.serviceTTL(service)
	switch qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		seen := make(map[string]bool, len(instances))
		for _, in := range instances {
			if limit > 0 && len(resp.Answer) == limit {
				break
			}
			addr := in.Address
			if addr == "" {
				addr = in.NodeAddress
			}
			if seen[addr] {
				continue
			}
			seen[addr] = true
			if rr := addressRecord(qname, qtype, addr, ttl); rr != nil {
				resp.Answer = append(resp.Answer, rr)
			}
		}
	case dns.TypeSRV:
		extras := make(map[string]bool, len(instances))
		for _, in := range instances {
			if limit > 0 && len(resp.Answer) == limit {
				break
			}
			weight := in.WeightPassing
			if in.Status == StatusWarning {
				weight = in.WeightWarning
			}
			if weight <= 0 {
				weight = 1
			}
			target, ip := s.srvTarget(in)
			resp.Answer = append(resp.Answer, &dns.SRV{
				Hdr:      dns.RR_Header{Name: qname, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
				Priority: 1, Weight: uint16(min(weight, 65535)), Port: uint16(in.Port), Target: target,
			})
			if ip != "" && !extras[target] {
				extras[target] = true
				if rr := addressRecord(target, dns.TypeANY, ip, ttl); rr != nil {
					resp.Extra = append(resp.Extra, rr)
				}
			}
		}
	}
	if len(resp.Answer) == 0 {
		s.nodata(resp)
	}
}

// srvTarget is an instance's SRV target, and the IP for the additional
// section ("" for a host name target): the node's name when the instance
// uses the node's address, <hex>.addr.<dc>.<domain> for an IP of its own,
// else its own host name.
func (s *Server) srvTarget(in *Instance) (string, string) {
	if in.Address == "" || in.Address == in.NodeAddress {
		if net.ParseIP(in.NodeAddress) == nil {
			return dns.Fqdn(in.NodeAddress), ""
		}
		return in.Node + ".node." + s.dc + "." + s.cfg.Domain, in.NodeAddress
	}
	ip := net.ParseIP(in.Address)
	if ip == nil {
		return dns.Fqdn(in.Address), ""
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return hex.EncodeToString(ip) + ".addr." + s.dc + "." + s.cfg.Domain, in.Address
}

// addressRecord is the A (qtype A or ANY, IPv4), AAAA (AAAA or ANY, IPv6)
// or CNAME (any of them, a host name) record of addr, or nil.
func addressRecord(name string, qtype uint16, addr string, ttl uint32) dns.RR {
	ip := net.ParseIP(addr)
	if ip == nil {
		if _, ok := dns.IsDomainName(addr); !ok || addr == "" {
			return nil
		}
		return &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl}, Target: dns.Fqdn(addr)}
	}
	if v4 := ip.To4(); v4 != nil {
		if qtype != dns.TypeA && qtype != dns.TypeANY {
			return nil
		}
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: v4}
	}
	if qtype != dns.TypeAAAA && qtype != dns.TypeANY {
		return nil
	}
	return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip}
}

func (s *Server) node(ctx context.Context, resp *dns.Msg, qtype uint16, qname, name string) {
	n, err := s.cat.Node(ctx, name)
	if err != nil {
		s.servfail(resp, qname, err)
		return
	}
	if n == nil {
		s.nxdomain(resp)
		return
	}
	ttl := seconds(s.cfg.NodeTTL)
	switch qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		if rr := addressRecord(qname, qtype, n.Address, ttl); rr != nil {
			resp.Answer = append(resp.Answer, rr)
		}
	}
	if (qtype == dns.TypeTXT || qtype == dns.TypeANY) && len(n.Meta) > 0 {
		keys := make([]string, 0, len(n.Meta))
		for k := range n.Meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			resp.Answer = append(resp.Answer, &dns.TXT{
				Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
				Txt: []string{k + "=" + n.Meta[k]},
			})
		}
	}
	if len(resp.Answer) == 0 {
		s.nodata(resp)
	}
}

// addrLookup answers <hex IP>.addr.<domain>, the SRV target of an instance
// with an address of its own.
func (s *Server) addrLookup(resp *dns.Msg, qtype uint16, qname, label string) {
	b, err := hex.DecodeString(label)
	if err != nil || len(b) != net.IPv4len && len(b) != net.IPv6len {
		s.nxdomain(resp)
		return
	}
	if rr := addressRecord(qname, qtype, net.IP(b).String(), seconds(s.cfg.NodeTTL)); rr != nil {
		resp.Answer = append(resp.Answer, rr)
		return
	}
	s.nodata(resp)
}

// ptr answers a reverse query with the nodes that have the address; false
// when none has.
func (s *Server) ptr(ctx context.Context, resp *dns.Msg, name string) bool {
	ip := reverseIP(name)
	if ip == nil {
		return false
	}
	nodes, err := s.cat.Nodes(ctx)
	if err != nil {
		s.servfail(resp, name, err)
		return true
	}
	for _, n := range nodes {
		if nip := net.ParseIP(n.Address); nip != nil && nip.Equal(ip) {
			resp.Answer = append(resp.Answer, &dns.PTR{
				Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: seconds(s.cfg.NodeTTL)},
				Ptr: n.Name + ".node." + s.dc + "." + s.cfg.Domain,
			})
		}
	}
	if len(resp.Answer) > 0 {
		resp.Authoritative = true
		return true
	}
	return false
}

// reverseIP parses an in-addr.arpa or ip6.arpa name, or returns nil.
func reverseIP(name string) net.IP {
	labels := dns.SplitDomainName(name)
	switch {
	case len(labels) == 6 && labels[4] == "in-addr":
		slices.Reverse(labels[:4])
		return net.ParseIP(strings.Join(labels[:4], ".")).To4()
	case len(labels) == 34 && labels[32] == "ip6":
		nibbles := labels[:32]
		var b strings.Builder
		for i := 31; i >= 0; i-- {
			if len(nibbles[i]) != 1 {
				return nil
			}
			b.WriteString(nibbles[i])
			if i%4 == 0 && i > 0 {
				b.WriteByte(':')
			}
		}
		return net.ParseIP(b.String())
	}
	return nil
}
