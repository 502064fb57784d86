package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/spf13/pflag"

	kvxdns "github.com/kvxproject/kvx/pkg/dns"
	"github.com/kvxproject/kvx/pkg/dns/httpcatalog"
)

// dnsFlags are the DNS interface's flags, shared by every command that
// serves DNS (kvx server; kvx agent to come).
type dnsFlags struct {
	addr           string
	domain         string
	onlyPassing    bool
	allowStale     bool
	nodeTTL        time.Duration
	serviceTTL     []string
	udpAnswerLimit int
	recursors      []string
}

// dnsOff is the -dns-addr value (besides "") that turns DNS off.
const dnsOff = "off"

func (d *dnsFlags) register(f *pflag.FlagSet) {
	f.StringVar(&d.addr, "dns-addr", kvxdns.DefaultAddr, `DNS interface address, UDP and TCP ("" or "off": no DNS; the built-in address in use: a warning, no DNS)`)
	f.StringVar(&d.domain, "domain", kvxdns.DefaultDomain, "DNS domain answered (<svc>.service.<domain>, <node>.node.<domain>)")
	f.BoolVar(&d.onlyPassing, "dns-only-passing", true, "answer only instances whose checks all pass (false: warning too; critical never)")
	f.BoolVar(&d.allowStale, "dns-allow-stale", true, "answer DNS from this server's state even if it is a follower out of touch with its leader")
	f.DurationVar(&d.nodeTTL, "dns-node-ttl", 0, "TTL of node records")
	f.StringArrayVar(&d.serviceTTL, "dns-service-ttl", nil, "TTL of a service's records, svc=ttl; a name ending in * is a prefix, * alone every service (repeatable)")
	f.IntVar(&d.udpAnswerLimit, "dns-udp-answer-limit", kvxdns.DefaultUDPAnswerLimit, fmt.Sprintf("records in a UDP answer to a query without EDNS0, 1 to %d", kvxdns.MaxUDPAnswerLimit))
	f.StringArrayVar(&d.recursors, "dns-recursors", nil, "DNS server (host[:port]) that answers names outside the domain, tried in order (repeatable; none: REFUSED)")
}

// config is the DNS configuration the flags ask for, nil when DNS is off.
func (d *dnsFlags) config(f *pflag.FlagSet) (*kvxdns.Config, error) {
	if d.addr == "" || d.addr == dnsOff {
		for _, name := range []string{"domain", "dns-only-passing", "dns-allow-stale", "dns-node-ttl", "dns-service-ttl", "dns-udp-answer-limit", "dns-recursors"} {
			if f.Changed(name) {
				return nil, fmt.Errorf("-%s: DNS is off (-dns-addr %q)", name, d.addr)
			}
		}
		return nil, nil
	}
	if d.udpAnswerLimit < 1 { // 0 would mean the default to Config
		return nil, fmt.Errorf("-dns-udp-answer-limit %d: must be from 1 to %d", d.udpAnswerLimit, kvxdns.MaxUDPAnswerLimit)
	}
	cfg := &kvxdns.Config{
		Addr: d.addr, Domain: d.domain, AnswerWarning: !d.onlyPassing, NodeTTL: d.nodeTTL,
		UDPAnswerLimit: d.udpAnswerLimit, Recursors: append([]string{}, d.recursors...),
	}
	if len(d.serviceTTL) > 0 {
		cfg.ServiceTTL = map[string]time.Duration{}
		for _, v := range d.serviceTTL {
			name, ttl, err := kvxdns.ParseServiceTTL(v)
			if err != nil {
				return nil, err
			}
			cfg.ServiceTTL[name] = ttl
		}
	}
	check := *cfg
	if err := check.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// listener is DNS for kvx agent, in one call beside its HTTP listener:
//
//	l, err := o.dns.listener(cmd.Flags(), a.Call, logger) // usage error if err
//	if l != nil {
//		a.Listen(l)
//	}
//
// The flags' configuration, answered from the servers' catalog read
// through call (the agent's, with its failover) and kept current by
// blocking queries; the datacenter is learned from the servers. nil when
// DNS is off; the built-in address taken is a warning and no DNS, as for
// kvx server.
func (d *dnsFlags) listener(f *pflag.FlagSet, call func(context.Context, func(*consulapi.Client) error) error, logger *slog.Logger) (*httpcatalog.Listener, error) {
	cfg, err := d.config(f)
	if err != nil || cfg == nil {
		return nil, err
	}
	return httpcatalog.NewListener(*cfg, httpcatalog.Options{Call: call, AllowStale: d.allowStale, Logger: logger}, !f.Changed("dns-addr"))
}
