package config

import (
	"net"
	"net/url"
	"strconv"
	"strings"
)

// validateCheck applies Consul's rules to one decoded check.
func (p *parser) validateCheck(n *node, c *Check, inService bool) {
	if !inService && c.Name == "" {
		p.errs.add(n.pathOf("name"), "is required")
	}
	if !inService && c.ID == "" {
		c.ID = c.Name
	}
	switch c.Status {
	case "", StatusPassing, StatusWarning, StatusCritical:
	default:
		p.errs.add(n.pathOf("status"), "%q is not passing, warning or critical", c.Status)
	}

	var kinds []string
	for _, k := range []struct {
		key string
		set bool
	}{
		{"args", len(c.Args) > 0},
		{"http", c.HTTP != ""},
		{"tcp", c.TCP != ""},
		{"grpc", c.GRPC != ""},
		{"ttl", c.TTL > 0},
	} {
		if k.set {
			kinds = append(kinds, k.key)
		}
	}
	switch len(kinds) {
	case 0:
		p.errs.add(n.path, "needs one of args, http, tcp, grpc or ttl")
		return
	case 1:
	default:
		p.errs.add(n.path, "has %s: give exactly one of args, http, tcp, grpc or ttl", strings.Join(kinds, " and "))
		return
	}

	kind := c.Kind()
	if kind == KindTTL {
		if c.Interval > 0 {
			p.errs.add(n.pathOf("interval"), "a ttl check takes no interval")
		}
	} else if c.Interval <= 0 {
		p.errs.add(n.pathOf("interval"), "is required for a %s check, and must be more than 0", kind)
	}
	switch kind {
	case KindScript:
		if !p.opts.EnableScriptChecks {
			p.errs.add(n.pathOf("args"), "script checks are disabled on this agent; enable them with -enable-script-checks")
		}
		if c.Args[0] == "" {
			p.errs.add(n.pathOf("args")+"[0]", "the program is empty")
		}
	case KindHTTP:
		u, err := url.Parse(c.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.errs.add(n.pathOf("http"), "%q is not an http:// or https:// URL", c.HTTP)
		}
		if c.Method != "" && strings.ContainsAny(c.Method, " \t\r\n/") {
			p.errs.add(n.pathOf("method"), "%q is not an HTTP method", c.Method)
		}
	case KindTCP:
		if _, _, err := net.SplitHostPort(c.TCP); err != nil {
			p.errs.add(n.pathOf("tcp"), "%q is not host:port", c.TCP)
		}
	case KindGRPC:
		addr, _, _ := strings.Cut(c.GRPC, "/")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			p.errs.add(n.pathOf("grpc"), "%q is not host:port or host:port/service", c.GRPC)
		}
	}
}

// crossCheck applies the rules across all files, in load order: service
// and check IDs unique, a check's service_id naming a loaded service.
func crossCheck(files []*Definitions) []error {
	var errs []error
	services := map[string]*Service{}
	checks := map[string]*Check{}
	for _, d := range files {
		for i := range d.Services {
			s := &d.Services[i]
			if prev, dup := services[s.ID]; dup {
				errs = append(errs, &FieldError{File: s.File, Field: "service " + s.ID,
					Msg: "service ID " + strconv.Quote(s.ID) + " is already defined in " + prev.File})
				continue
			}
			services[s.ID] = s
		}
	}
	for _, d := range files {
		for _, c := range d.AllChecks() {
			if prev, dup := checks[c.ID]; dup {
				errs = append(errs, &FieldError{File: c.File, Field: "check " + c.ID,
					Msg: "check ID " + strconv.Quote(c.ID) + " is already defined in " + prev.File})
				continue
			}
			checks[c.ID] = &c
			if c.ServiceID != "" && services[c.ServiceID] == nil {
				errs = append(errs, &FieldError{File: c.File, Field: "check " + c.ID,
					Msg: "service_id " + strconv.Quote(c.ServiceID) + " names no service defined in the config"})
			}
		}
	}
	return errs
}
