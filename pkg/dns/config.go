package dns

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults, as Consul's.
const (
	DefaultAddr           = "127.0.0.1:8600"
	DefaultDomain         = "consul."
	DefaultUDPAnswerLimit = 3
	// MaxUDPAnswerLimit caps UDPAnswerLimit, as Consul's maxUDPAnswerLimit.
	MaxUDPAnswerLimit = 8
	// DefaultRecursorTimeout is how long one recursor may take.
	DefaultRecursorTimeout = 2 * time.Second
)

// Config configures a DNS server. The zero value of a field means its
// default.
type Config struct {
	Addr       string // UDP and TCP listen address; port 0 picks a free port for both
	Domain     string // default "consul."
	Datacenter string // the only datacenter answered (required by New; a Listener may learn it)

	// AnswerWarning also answers instances whose worst check is warning
	// (Consul's only_passing=false); critical ones are never answered.
	AnswerWarning bool

	NodeTTL time.Duration
	// ServiceTTL maps a service name, or a prefix ending in `*` ("*" alone:
	// every service), to its TTL.
	ServiceTTL map[string]time.Duration

	// UDPAnswerLimit is how many records a UDP answer to a query without
	// EDNS0 carries at most (default 3, capped at 8).
	UDPAnswerLimit int

	// Recursors (host:port, port 53 when omitted) answer names outside the
	// domain, tried in order.
	Recursors       []string
	RecursorTimeout time.Duration
}

// Validate checks the configuration and normalises the domain and the
// recursors' addresses.
func (c *Config) Validate() error {
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	c.Domain = dns.CanonicalName(c.Domain)
	if _, ok := dns.IsDomainName(c.Domain); !ok || c.Domain == "." || !validLabels(c.Domain) {
		return fmt.Errorf("-domain %q: not a domain name", c.Domain)
	}
	if c.UDPAnswerLimit == 0 {
		c.UDPAnswerLimit = DefaultUDPAnswerLimit
	}
	if c.UDPAnswerLimit < 1 || c.UDPAnswerLimit > MaxUDPAnswerLimit {
		return fmt.Errorf("-dns-udp-answer-limit %d: must be from 1 to %d", c.UDPAnswerLimit, MaxUDPAnswerLimit)
	}
	if c.NodeTTL < 0 {
		return fmt.Errorf("-dns-node-ttl %s: must not be negative", c.NodeTTL)
	}
	ttls := make(map[string]time.Duration, len(c.ServiceTTL))
	for name, ttl := range c.ServiceTTL {
		ttls[strings.ToLower(name)] = ttl
		if ttl < 0 {
			return fmt.Errorf("-dns-service-ttl %s=%s: must not be negative", name, ttl)
		}
		if i := strings.IndexByte(name, '*'); name == "" || i >= 0 && i != len(name)-1 {
			return fmt.Errorf("-dns-service-ttl %q: want a service name, or a prefix ending in *", name)
		}
	}
	c.ServiceTTL = ttls
	for i, r := range c.Recursors {
		if _, _, err := net.SplitHostPort(r); err != nil {
			r = net.JoinHostPort(strings.Trim(r, "[]"), "53")
		}
		host, port, err := net.SplitHostPort(r)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
			return fmt.Errorf("-dns-recursors %q: want host[:port]", c.Recursors[i])
		}
		c.Recursors[i] = r
	}
	if c.RecursorTimeout == 0 {
		c.RecursorTimeout = DefaultRecursorTimeout
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("-dns-addr %q: want host:port (%v)", c.Addr, err)
	}
	return nil
}

// ParseServiceTTL parses one -dns-service-ttl value, "name=ttl".
func ParseServiceTTL(s string) (string, time.Duration, error) {
	name, v, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", 0, fmt.Errorf("-dns-service-ttl %q: want name=ttl (e.g. web=30s, *=5s)", s)
	}
	ttl, err := time.ParseDuration(v)
	if err != nil {
		return "", 0, fmt.Errorf("-dns-service-ttl %q: %v", s, err)
	}
	return name, ttl, nil
}

// serviceTTL is a service's TTL in seconds: its exact entry, else the
// longest wildcard prefix that matches, else 0.
func (c *Config) serviceTTL(service string) uint32 {
	if ttl, ok := c.ServiceTTL[service]; ok {
		return seconds(ttl)
	}
	best, found := -1, time.Duration(0)
	for name, ttl := range c.ServiceTTL {
		if p, ok := strings.CutSuffix(name, "*"); ok && strings.HasPrefix(service, p) && len(p) > best {
			best, found = len(p), ttl
		}
	}
	return seconds(found)
}

func seconds(d time.Duration) uint32 { return uint32(d / time.Second) }

// validLabels reports whether every label of a domain is letters, digits,
// '-' and '_'.
func validLabels(domain string) bool {
	for _, l := range dns.SplitDomainName(domain) {
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
