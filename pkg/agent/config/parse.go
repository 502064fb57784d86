package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Options change what a load accepts.
type Options struct {
	// EnableScriptChecks allows checks with `args`, as Consul's
	// -enable-script-checks (or enable_local_script_checks) does. Without
	// it a script check is an error.
	EnableScriptChecks bool
	// ValidateWatch, when set, checks each entry of "watches" (its error
	// is reported with the file and the entry's place).
	ValidateWatch func(params map[string]any) error
}

// topLevel are the keys of a config file kvx reads; other keys are
// Consul agent settings, ignored with a warning.
var topLevel = map[string]bool{"service": true, "services": true, "check": true, "checks": true, "watches": true}

// ParseFile parses one config file's content. name is how errors and
// warnings name the file (LoadDir passes the base name). The definitions
// are validated one by one; rules across files (duplicate IDs, a check's
// service_id) are LoadDir's, and ParseFile applies them within the file.
func ParseFile(name string, data []byte, opts Options) (*Definitions, error) {
	defs, errs := parseFile(name, data, opts)
	if len(errs.errs) == 0 {
		errs.errs = crossCheck([]*Definitions{defs})
	}
	if len(errs.errs) > 0 {
		return nil, errors.Join(errs.errs...)
	}
	return defs, nil
}

// parseFile decodes and validates one file; errs holds every problem found.
func parseFile(name string, data []byte, opts Options) (*Definitions, *errList) {
	errs := &errList{file: name}
	defs := &Definitions{}
	raw, err := decodeJSON(data)
	if err != nil {
		errs.add("", "%s", err)
		return defs, errs
	}
	root, ok := raw.(map[string]any)
	if !ok {
		errs.add("", "is %s, want a JSON object", describe(raw))
		return defs, errs
	}
	top := newNode("", root, errs)
	for _, nk := range sortedKeys(top.keys) {
		if !topLevel[nk] {
			top.used[nk] = true
			defs.Warnings = append(defs.Warnings, fmt.Sprintf("%s: %s: ignored: only service, services, check, checks and watches are read from agent config files", name, top.keys[nk]))
		}
	}
	p := parser{file: name, opts: opts, errs: errs}
	if n := top.object("service"); n != nil {
		defs.Services = append(defs.Services, p.service(n))
	}
	for _, n := range top.objects("services") {
		defs.Services = append(defs.Services, p.service(n))
	}
	if n := top.object("check"); n != nil {
		defs.Checks = append(defs.Checks, p.check(n, false))
	}
	for _, n := range top.objects("checks") {
		defs.Checks = append(defs.Checks, p.check(n, false))
	}
	for _, n := range top.objects("watches") {
		w := Watch{File: name, Path: n.path, Params: n.raw()}
		if opts.ValidateWatch != nil {
			if err := opts.ValidateWatch(w.Params); err != nil {
				errs.add(n.path, "%s", err)
			}
		}
		defs.Watches = append(defs.Watches, w)
	}
	top.finish()
	return defs, errs
}

// decodeJSON decodes one JSON value, numbers kept as json.Number; a syntax
// error names its line and column.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return nil, errors.New("invalid JSON: more than one value in the file")
		}
		return v, nil
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line, col := position(data, syn.Offset)
		return nil, fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, syn)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, errors.New("invalid JSON: unexpected end of file")
	}
	return nil, fmt.Errorf("invalid JSON: %w", err)
}

func position(data []byte, offset int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < offset-1 && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

type parser struct {
	file string
	opts Options
	errs *errList
}

func (p *parser) service(n *node) Service {
	s := Service{File: p.file, Weights: Weights{Passing: 1, Warning: 1}}
	s.ID = n.str("id")
	s.Name = n.str("name")
	s.Tags = n.strings("tags")
	s.Address = n.str("address")
	s.Meta = n.stringMap("meta")
	s.Port = n.integer("port")
	s.EnableTagOverride = n.boolean("enable_tag_override")
	if w := n.object("weights"); w != nil {
		if _, _, ok := w.get("passing"); ok {
			s.Weights.Passing = w.integer("passing")
		}
		if _, _, ok := w.get("warning"); ok {
			s.Weights.Warning = w.integer("warning")
		}
		if s.Weights.Passing < 1 {
			p.errs.add(w.pathOf("passing"), "must be 1 or more")
		}
		w.finish()
	}
	if ta := n.object("tagged_addresses"); ta != nil {
		s.TaggedAddresses = map[string]ServiceAddress{}
		for _, k := range sortedKeys(ta.keys) {
			a := ta.object(ta.keys[k])
			if a == nil {
				continue
			}
			s.TaggedAddresses[ta.keys[k]] = ServiceAddress{Address: a.str("address"), Port: a.integer("port")}
			a.finish()
		}
	}
	n.ignored("token")
	n.unsupported("kind", "proxy", "connect", "socket_path", "locality", "namespace", "partition")

	if s.Name == "" {
		p.errs.add(n.pathOf("name"), "is required")
	}
	if s.ID == "" {
		s.ID = s.Name
	}
	if s.Port > 65535 {
		p.errs.add(n.pathOf("port"), "%d is not a port", s.Port)
	}
	p.validateMeta(n.pathOf("meta"), s.Meta)

	var checks []*node
	checks = append(checks, n.objects("checks")...)
	if c := n.object("check"); c != nil {
		checks = append(checks, c)
	}
	for i, cn := range checks {
		c := p.check(cn, true)
		c.ServiceID = s.ID
		if c.ID == "" {
			c.ID = "service:" + s.ID
			if len(checks) > 1 {
				c.ID += ":" + strconv.Itoa(i+1)
			}
		}
		if c.Name == "" {
			c.Name = fmt.Sprintf("Service '%s' check", s.Name)
		}
		s.Checks = append(s.Checks, c)
	}
	n.finish()
	return s
}

func (p *parser) validateMeta(path string, meta map[string]string) {
	if len(meta) > 64 {
		p.errs.add(path, "has %d pairs, at most 64 are allowed", len(meta))
	}
	for _, k := range sortedKeys(meta) {
		v := meta[k]
		switch {
		case k == "":
			p.errs.add(path, "has an empty key")
		case len(k) > 128:
			p.errs.add(path+"."+k, "key is longer than 128 characters")
		case len(v) > 512:
			p.errs.add(path+"."+k, "value is longer than 512 characters")
		}
	}
}

// check decodes and validates one check; inService says it is a service's
// own check (its service_id is the service's, its name and ID defaulted).
func (p *parser) check(n *node, inService bool) Check {
	c := Check{File: p.file}
	c.ID = n.str("id")
	c.Name = n.str("name")
	c.Notes = n.str("notes")
	c.ServiceID = n.str("service_id")
	c.Status = n.str("status")
	c.Args = n.strings("args")
	c.HTTP = n.str("http")
	c.Method = n.str("method")
	c.Header = n.header("header")
	c.Body = n.str("body")
	c.TLSServerName = n.str("tls_server_name")
	c.TLSSkipVerify = n.boolean("tls_skip_verify")
	c.DisableRedirects = n.boolean("disable_redirects")
	c.TCP = n.str("tcp")
	c.GRPC = n.str("grpc")
	c.GRPCUseTLS = n.boolean("grpc_use_tls")
	c.TTL = n.duration("ttl")
	c.Interval = n.duration("interval")
	c.Timeout = n.duration("timeout")
	c.SuccessBeforePassing = n.integer("success_before_passing")
	c.FailuresBeforeWarning = n.integer("failures_before_warning")
	c.FailuresBeforeCritical = n.integer("failures_before_critical")
	c.DeregisterCriticalServiceAfter = n.duration("deregister_critical_service_after")
	c.OutputMaxSize = n.integer("output_max_size")
	n.ignored("token")
	n.unsupported("docker_container_id", "shell", "h2ping", "h2ping_use_tls", "udp",
		"alias_node", "alias_service", "os_service", "script", "namespace", "partition")
	p.validateCheck(n, &c, inService)
	n.finish()
	return c
}
