// Package dns is kvx's DNS interface to the catalog, as Consul's: it answers
// <svc>.service.<domain>, <tag>.<svc>.service.<domain>, RFC 2782
// _<svc>._<tag>.service.<domain>, <node>.node.<domain>, <hex>.addr.<domain>
// (the SRV targets of instances with their own address), each optionally
// with the datacenter before the domain, and PTR queries (in-addr.arpa,
// ip6.arpa) for node addresses. It serves UDP and TCP on one address with
// github.com/miekg/dns.
//
// It reads the catalog through the small Catalog interface only, so that a
// server answers straight from its in-memory state store (no Raft, no HTTP;
// pkg/server supplies that implementation), and an agent from a cached view
// of the servers' HTTP API (package httpcatalog). New binds and serves at
// once; a Listener does it in the steps of a process that binds all its
// ports before it starts anything (kvx agent), and may learn the
// datacenter from the servers before it serves.
//
// Consul's behaviours it keeps: only instances whose checks all pass
// (warning too with OnlyPassing false, critical never); answers shuffled;
// node TTL and per-service TTLs with a `*` wildcard (exact name first, then
// the longest matching prefix), 0 by default; NXDOMAIN with the SOA in the
// authority section for a name that does not exist (an unknown service, or
// one with no healthy instance), NOERROR with no answer and the SOA for a
// name that exists without the type asked; SRV answers with the target's
// A/AAAA in the additional section; over UDP, answers to a query without
// EDNS0 are cut to UDPAnswerLimit records (default 3, at most 8, as
// udp_answer_limit), and anything that still exceeds 512 bytes (or the
// client's EDNS0 size) is cut further. Where Consul only sets the TC bit
// with enable_truncate, kvx always sets it when records were dropped for
// size, so a client retries over TCP and gets the complete answer (TCP
// answers are never cut); records dropped for UDPAnswerLimit are not
// flagged, as in Consul, because that limit spreads load on purpose.
// Names outside the domain go to the recursors in order (REFUSED when
// there are none); a PTR query for an address no node has goes to them too.
package dns
