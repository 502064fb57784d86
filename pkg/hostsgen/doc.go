// Package hostsgen turns the healthy catalog into a hosts file for
// dnsmasq's --addn-hosts: for each instance whose checks all pass,
// "<addr> <svc>.service.<domain>" and "<addr> <tag>.<svc>.service.<domain>"
// (and, on request, "<addr> <node>.node.<domain>"), where addr is the
// instance's own address if it has one, else its node's; IPv4 and IPv6.
//
// The output is deterministic: one "address name" pair a line, names lower
// case, sorted by name and then by address, duplicates merged, and no
// timestamp unless a header is asked for; the same catalog gives the same
// bytes, so kvx in never re-uploads an unchanged file.
//
// It is safe against crafted registrations: a service, tag or node name
// that is not a DNS label (letters, digits, inner hyphens, at most 63), or
// an address that is not an IP, is skipped and reported (Rejected) with its
// node and service, so nothing can inject a line or a second name into the
// hosts file. The shrink guard (Shrink) compares a new file's entries with
// the last published one's, so that a catalog outage cannot empty every
// node's hosts file.
//
// Generate is pure (instances in, bytes out); Fetch reads the catalog
// through the HTTP API (/v1/catalog/services, then /v1/health/service/:name
// per service, a few at a time); Watch blocks on the catalog's indexes
// (catalog/services, catalog/nodes, health/state/any) and says when any
// moved.
package hostsgen
