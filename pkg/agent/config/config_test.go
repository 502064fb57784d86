package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadDirTestdata(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "testdata", "agent")
	defs, err := LoadDir(dir, Options{EnableScriptChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(defs.Services) != 2 || defs.Services[0].ID != "dns" || defs.Services[1].ID != "web1" {
		t.Fatalf("services = %+v, want dns (dns.json) then web1 (web.json)", defs.Services)
	}
	dns, web := defs.Services[0], defs.Services[1]
	if dns.Port != 53 || dns.Weights != (Weights{Passing: 1, Warning: 1}) || len(dns.Checks) != 1 {
		t.Errorf("dns = %+v", dns)
	}
	if c := dns.Checks[0]; c.ID != "service:dns" || c.ServiceID != "dns" || c.TCP != "127.0.0.1:53" ||
		c.Kind() != KindTCP || c.Interval != 10*time.Second || c.Timeout != 2*time.Second || c.InitialStatus() != StatusCritical {
		t.Errorf("dns check = %+v", c)
	}
	if web.Name != "web" || web.Port != 8080 || web.Weights != (Weights{Passing: 10, Warning: 1}) ||
		!reflect.DeepEqual(web.Tags, []string{"primary", "v1"}) || web.Meta["version"] != "1.4.2" {
		t.Errorf("web = %+v", web)
	}
	wantHTTP := Check{
		ID: "web-http", Name: "HTTP API on port 8080", ServiceID: "web1",
		HTTP: "https://127.0.0.1:8080/health", Method: "POST", Body: `{"deep": true}`,
		Header:        map[string][]string{"Content-Type": {"application/json"}, "X-Health-Probe": {"kvx"}},
		TLSSkipVerify: true, Interval: 10 * time.Second, Timeout: time.Second,
		SuccessBeforePassing: 2, FailuresBeforeCritical: 3,
		DeregisterCriticalServiceAfter: 90 * time.Minute, File: "web.json",
	}
	if len(web.Checks) != 1 || !reflect.DeepEqual(web.Checks[0], wantHTTP) {
		t.Errorf("web check =\n%+v\nwant\n%+v", web.Checks, wantHTTP)
	}
	if len(defs.Checks) != 2 || defs.Checks[0].ID != "disk-root" || defs.Checks[1].ID != "batch-heartbeat" {
		t.Fatalf("top-level checks = %+v, want disk-root (script.json) then batch-heartbeat (ttl.json)", defs.Checks)
	}
	if c := defs.Checks[0]; c.Kind() != KindScript || c.ServiceID != "web1" || len(c.Args) != 7 || c.Timeout != 5*time.Second {
		t.Errorf("script check = %+v", c)
	}
	if c := defs.Checks[1]; c.Kind() != KindTTL || c.TTL != 30*time.Second || c.InitialStatus() != StatusPassing {
		t.Errorf("ttl check = %+v", c)
	}
	if got := len(defs.AllChecks()); got != 4 {
		t.Errorf("AllChecks has %d checks, want 4", got)
	}

	_, err = LoadDir(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "script.json: checks[0].args: script checks are disabled") {
		t.Errorf("without script checks enabled: err = %v", err)
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSpellings(t *testing.T) {
	camel := `{"Service": {"ID": "api", "Name": "api", "Port": 80, "EnableTagOverride": true,
	  "Check": {"HTTP": "http://127.0.0.1/", "Interval": "1s", "TLSSkipVerify": true, "Method": "HEAD",
	    "SuccessBeforePassing": 2, "FailuresBeforeCritical": 3, "DeregisterCriticalServiceAfter": "1m",
	    "Header": {"A": ["b"]}, "Timeout": "500ms", "Status": "warning", "Notes": "n"}},
	  "Checks": [{"Name": "s", "ServiceID": "api", "ScriptArgs": ["true"], "Interval": "2s"},
	             {"Name": "g", "GRPC": "127.0.0.1:9000/health", "GRPCUseTLS": true, "Interval": "3s"}]}`
	snake := `{"service": {"id": "api", "name": "api", "port": 80, "enable_tag_override": true,
	  "check": {"http": "http://127.0.0.1/", "interval": "1s", "tls_skip_verify": true, "method": "HEAD",
	    "success_before_passing": 2, "failures_before_critical": 3, "deregister_critical_service_after": "1m",
	    "header": {"A": ["b"]}, "timeout": "500ms", "status": "warning", "notes": "n"}},
	  "checks": [{"name": "s", "service_id": "api", "args": ["true"], "interval": "2s"},
	             {"name": "g", "grpc": "127.0.0.1:9000/health", "grpc_use_tls": true, "interval": "3s"}]}`
	opts := Options{EnableScriptChecks: true}
	a, err := ParseFile("x.json", []byte(camel), opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseFile("x.json", []byte(snake), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("CamelCase and snake_case differ:\n%+v\n%+v", a, b)
	}
	c := b.Services[0].Checks[0]
	if !c.TLSSkipVerify || c.SuccessBeforePassing != 2 || c.DeregisterCriticalServiceAfter != time.Minute || c.Status != StatusWarning {
		t.Errorf("check = %+v", c)
	}
	if b.Checks[0].Kind() != KindScript || b.Checks[1].Kind() != KindGRPC || !b.Checks[1].GRPCUseTLS {
		t.Errorf("checks = %+v", b.Checks)
	}
}

func TestServiceCheckDefaults(t *testing.T) {
	defs, err := ParseFile("s.json", []byte(`{"service": {"name": "redis",
	  "checks": [{"tcp": "127.0.0.1:6379", "interval": "5s"}, {"ttl": "10s"}],
	  "check": {"tcp": "127.0.0.1:6380", "interval": "5s"}}}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := defs.Services[0]
	var ids []string
	for _, c := range s.Checks {
		ids = append(ids, c.ID)
		if c.Name != "Service 'redis' check" || c.ServiceID != "redis" {
			t.Errorf("check %+v: want Consul's default name and the service's ID", c)
		}
	}
	if want := []string{"service:redis:1", "service:redis:2", "service:redis:3"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("ids = %v, want %v", ids, want)
	}
	if s.Checks[2].TCP != "127.0.0.1:6380" {
		t.Errorf("the service's `check` should come after its `checks`: %+v", s.Checks)
	}
}

func TestBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"bad duration", `{"service": {"name": "web", "check": {"http": "http://x/", "interval": "10x"}}}`,
			`web.json: service.check.interval: "10x" is not a duration`},
		{"duration as number", `{"check": {"name": "c", "ttl": 10}}`,
			`web.json: check.ttl: is the number 10, want a duration string such as "10s"`},
		{"syntax", "{\"service\": {\n  \"name\": \"web\",,\n}}", `web.json: invalid JSON at line 2, column 17`},
		{"empty", ``, `web.json: invalid JSON: unexpected end of file`},
		{"not an object", `[1]`, `web.json: is an array, want a JSON object`},
		{"unknown key", `{"service": {"name": "web", "prot": 80}}`, `web.json: service.prot: invalid config key`},
		{"unsupported", `{"check": {"name": "c", "docker_container_id": "x", "args": ["true"], "interval": "1s"}}`,
			`web.json: check.docker_container_id: is a Consul field kvx does not support`},
		{"twice", `{"service": {"name": "web", "port": 1, "Port": 2}}`, `web.json: service.port: given twice, as "Port" and "port"`},
		{"no name", `{"service": {"port": 80}}`, `web.json: service.name: is required`},
		{"check no name", `{"checks": [{"ttl": "1s"}]}`, `web.json: checks[0].name: is required`},
		{"no kind", `{"check": {"name": "c", "interval": "1s"}}`, `web.json: check: needs one of args, http, tcp, grpc or ttl`},
		{"two kinds", `{"check": {"name": "c", "http": "http://x/", "tcp": "x:1", "interval": "1s"}}`,
			`web.json: check: has http and tcp: give exactly one of args, http, tcp, grpc or ttl`},
		{"no interval", `{"check": {"name": "c", "tcp": "x:1"}}`,
			`web.json: check.interval: is required for a tcp check, and must be more than 0`},
		{"ttl and interval", `{"check": {"name": "c", "ttl": "5s", "interval": "1s"}}`,
			`web.json: check.interval: a ttl check takes no interval`},
		{"script disabled", `{"check": {"name": "c", "args": ["true"], "interval": "1s"}}`,
			`web.json: check.args: script checks are disabled on this agent; enable them with -enable-script-checks`},
		{"bad status", `{"check": {"name": "c", "ttl": "1s", "status": "ok"}}`,
			`web.json: check.status: "ok" is not passing, warning or critical`},
		{"bad url", `{"check": {"name": "c", "http": "localhost:80", "interval": "1s"}}`,
			`web.json: check.http: "localhost:80" is not an http:// or https:// URL`},
		{"bad tcp", `{"check": {"name": "c", "tcp": "localhost", "interval": "1s"}}`,
			`web.json: check.tcp: "localhost" is not host:port`},
		{"negative", `{"check": {"name": "c", "ttl": "1s", "failures_before_critical": -1}}`,
			`web.json: check.failures_before_critical: -1 is not a whole number of 0 or more`},
		{"bad port", `{"service": {"name": "web", "port": 70000}}`, `web.json: service.port: 70000 is not a port`},
		{"bad tags", `{"services": [{"name": "a"}, {"name": "web", "tags": ["a", 1]}]}`,
			`web.json: services[1].tags[1]: is the number 1, want a string`},
		{"dangling service_id", `{"check": {"name": "c", "ttl": "1s", "service_id": "nope"}}`,
			`web.json: check c: service_id "nope" names no service defined in the config`},
		{"duplicate in file", `{"services": [{"name": "web"}, {"name": "web"}]}`,
			`web.json: service web: service ID "web" is already defined in web.json`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"web.json": tc.body})
			defs, err := LoadDir(dir, Options{})
			if err == nil {
				t.Fatalf("loaded %+v, want an error", defs)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant it to contain %s", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != "web.json" {
				t.Errorf("err %v is not a *FieldError naming web.json", err)
			}
		})
	}
}

func TestDuplicateAcrossFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a-web.json":   `{"service": {"name": "web", "check": {"id": "shared", "ttl": "1s"}}}`,
		"b-web2.json":  `{"service": {"id": "web", "name": "web-again"}}`,
		"c-check.json": `{"check": {"id": "shared", "name": "x", "ttl": "1s"}}`,
	})
	_, err := LoadDir(dir, Options{})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		`b-web2.json: service web: service ID "web" is already defined in a-web.json`,
		`c-check.json: check shared: check ID "shared" is already defined in a-web.json`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v\nwant it to contain %s", err, want)
		}
	}
}

func TestDirectoryRules(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"b.json":   `{"service": {"name": "b"}, "datacenter": "dc1", "node_name": "n1"}`,
		"a.json":   `{"service": {"name": "a"}}`,
		"c.yaml":   `service: {name: c}`,
		"README":   `not config`,
		"d.json.d": `{}`,
	})
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "e.json"), []byte(`{"service": {"name": "e"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	defs, err := LoadDir(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range defs.Services {
		names = append(names, s.Name)
	}
	if !reflect.DeepEqual(names, []string{"a", "b"}) {
		t.Errorf("services = %v, want [a b] in file-name order, nothing from other extensions or subdirectories", names)
	}
	joined := strings.Join(defs.Warnings, "\n")
	for _, want := range []string{"c.yaml: skipped", "README: skipped", "d.json.d: skipped", "sub: skipped",
		"b.json: datacenter: ignored", "b.json: node_name: ignored"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings =\n%s\nwant one containing %q", joined, want)
		}
	}

	if err := os.WriteFile(filepath.Join(dir, "z.hcl"), []byte(`service { name = "z" }`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir, Options{}); err == nil || !strings.Contains(err.Error(), "z.hcl: HCL is not supported") {
		t.Errorf("with an .hcl file: err = %v", err)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing"), Options{}); err == nil {
		t.Error("a missing dir loaded without error")
	}
}
