package render

import (
	"strings"
	"testing"
	"time"
)

// A consul-template configuration file, as its documentation writes one.
func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("ct.hcl", `
consul {
  address = "127.0.0.1:8500"
  token   = "abc"
}
log_level     = "warn"
kill_signal   = "SIGINT"
reload_signal = "SIGHUP"
max_stale     = "2m"
wait {
  min = "2s"
  max = "10s"
}
exec {
  command       = ["/usr/bin/app", "-c", "my conf"]
  reload_signal = "SIGHUP"
  kill_timeout  = "5s"
}
template {
  source      = "/etc/ct/haproxy.ctmpl"
  destination = "/etc/haproxy/haproxy.cfg"
  command     = "systemctl reload haproxy"
  check       = "haproxy -c -f {{.Path}}"
  perms       = 0600
  backup      = true
  wait        = "1s:3s"
}
template {
  contents        = "[[ key \"a\" ]]"
  destination     = "/tmp/a"
  left_delimiter  = "[["
  right_delimiter = "]]"
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.ConsulAddr != "127.0.0.1:8500" || c.ConsulToken != "abc" || c.LogLevel != "warn" || c.MaxStale != 2*time.Minute {
		t.Errorf("top level: %+v", c)
	}
	if c.Wait == nil || *c.Wait != (Wait{2 * time.Second, 10 * time.Second}) {
		t.Errorf("wait %+v", c.Wait)
	}
	if c.Exec == nil || c.Exec.Command != "'/usr/bin/app' '-c' 'my conf'" || c.Exec.ReloadSignal != "SIGHUP" || c.Exec.KillTimeout != 5*time.Second {
		t.Errorf("exec %+v", c.Exec)
	}
	if len(c.Templates) != 2 {
		t.Fatalf("templates %+v", c.Templates)
	}
	t0, t1 := c.Templates[0], c.Templates[1]
	if t0.Perms != 0o600 || !t0.Backup || t0.Check != "haproxy -c -f {{.Path}}" || t0.Wait == nil || t0.Wait.Max != 3*time.Second {
		t.Errorf("template 0 %+v", t0)
	}
	if t1.LeftDelim != "[[" || t1.Contents != `[[ key "a" ]]` {
		t.Errorf("template 1 %+v", t1)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`template { source = "a" destination = "b" perms = "0x" }`, `c.hcl: template[0].perms: "0x" is not octal`},
		{`template { source = "a" }`, "c.hcl: template[0]: destination is required"},
		{`template { source = "a" contents = "x" destination = "b" }`, "cannot specify both"},
		{`wait { min = "soon" }`, `c.hcl: wait.min: "soon" is not a duration`},
		{`consul { adress = "x" }`, "c.hcl: consul.adress: unknown key"},
		{"template {\n  source = \n}", "c.hcl: At 3:2"},
	} {
		_, err := ParseConfig("c.hcl", tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tc, err := ParseTemplateFlag("in.ctmpl:/etc/out.conf:service x restart && echo a:b")
	if err != nil || tc.Source != "in.ctmpl" || tc.Destination != "/etc/out.conf" || tc.Command != "service x restart && echo a:b" {
		t.Errorf("ParseTemplateFlag = %+v, %v", tc, err)
	}
	if _, err := ParseTemplateFlag("only"); err == nil {
		t.Error("-template without destination accepted")
	}
	w, err := ParseWait("5s")
	if err != nil || w != (Wait{5 * time.Second, 20 * time.Second}) {
		t.Errorf("ParseWait(5s) = %v, %v", w, err)
	}
	if _, err := ParseWait("10s:5s"); err == nil {
		t.Error("MAX < MIN accepted")
	}
}

func TestParseConfigSSLBlock(t *testing.T) {
	c, err := ParseConfig("c.hcl", `consul {
  ssl {
    enabled = true
    verify = false
    cert = "c.pem"
    key = "k.pem"
    ca_cert = "ca.pem"
    ca_path = "cas"
    server_name = "server.dc1.consul"
  }
}`)
	if err != nil {
		t.Fatal(err)
	}
	s := c.ConsulSSL
	if s == nil || s.Enabled == nil || !*s.Enabled || s.Verify == nil || *s.Verify || s.Cert != "c.pem" || s.Key != "k.pem" ||
		s.CACert != "ca.pem" || s.CAPath != "cas" || s.ServerName != "server.dc1.consul" {
		t.Fatalf("ssl = %+v", s)
	}
	if _, err := ParseConfig("c.hcl", `consul { ssl { enabled = "yes" } }`); err == nil || !strings.Contains(err.Error(), "consul.ssl.enabled") {
		t.Fatalf("a bad enabled: %v", err)
	}
}
