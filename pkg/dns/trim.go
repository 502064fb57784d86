package dns

import (
	"sort"

	"github.com/miekg/dns"
)

// maxEDNSSize caps the UDP answers to an EDNS0 client, whatever buffer it
// says it has: a larger datagram is fragmented, and fragments get lost.
const maxEDNSSize = 4096

// trim fits an answer to its transport. Over UDP without EDNS0 the answer
// is first cut to limit records (no TC bit: the limit spreads load on
// purpose). Then, over UDP, records are dropped from the end until the
// message fits 512 bytes or the client's EDNS0 size (at most 4096), and the TC bit says
// so; over TCP, only what exceeds a DNS message's 65535 bytes is dropped.
// The additional section keeps only the records of the SRV targets left.
func trim(req, resp *dns.Msg, network string, limit int) {
	maxSize := dns.MaxMsgSize
	if network == "udp" {
		maxSize = dns.MinMsgSize
		if edns := req.IsEdns0(); edns != nil && int(edns.UDPSize()) > maxSize {
			maxSize = min(int(edns.UDPSize()), maxEDNSSize)
		}
		if maxSize == dns.MinMsgSize && len(resp.Answer) > limit {
			resp.Answer = resp.Answer[:limit]
			syncExtra(resp, resp.Extra)
		}
	}
	if resp.Len() <= maxSize {
		return
	}
	all, extra := resp.Answer, resp.Extra
	// The largest number of answers that fits.
	keep := sort.Search(len(all)+1, func(k int) bool {
		resp.Answer = all[:k]
		syncExtra(resp, extra)
		return resp.Len() > maxSize
	}) - 1
	resp.Answer = all[:max(keep, 0)]
	syncExtra(resp, extra)
	// Still too big (one record and its addresses): drop addresses, keep OPT.
	for i := len(resp.Extra) - 1; i >= 0 && resp.Len() > maxSize; i-- {
		if resp.Extra[i].Header().Rrtype != dns.TypeOPT {
			resp.Extra = append(resp.Extra[:i:i], resp.Extra[i+1:]...)
		}
	}
	resp.Truncated = network == "udp"
}

// syncExtra sets the additional section to the records of extra that are
// about SRV targets in the answer (and the OPT record).
func syncExtra(resp *dns.Msg, extra []dns.RR) {
	if len(extra) == 0 {
		return
	}
	targets := make(map[string]bool, len(resp.Answer))
	for _, rr := range resp.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			targets[srv.Target] = true
		}
	}
	kept := make([]dns.RR, 0, len(extra))
	for _, rr := range extra {
		if rr.Header().Rrtype == dns.TypeOPT || targets[rr.Header().Name] {
			kept = append(kept, rr)
		}
	}
	resp.Extra = kept
}
