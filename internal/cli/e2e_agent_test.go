package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/miekg/dns"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

var agentHTTPLine = regexp.MustCompile(`msg="http api" addr=(127\.0\.0\.1:\d+)`)

// startAgentProc runs `kvx agent` and waits for its HTTP API.
func startAgentProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{log: &servertest.Buffer{}}
	// DNS off unless args ask for it (a later -dns-addr wins): tests bind
	// only ephemeral ports.
	p.cmd = exec.Command(bin, append([]string{"agent", "-http-addr", "127.0.0.1:0", "-advertise", "127.0.0.1", "-dns-addr", "off"}, args...)...)
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	servertest.Eventually(t, "the agent's HTTP API", func() bool {
		if m := agentHTTPLine.FindStringSubmatch(p.log.String()); m != nil {
			p.http = m[1]
			return true
		}
		if exited(p.cmd.Process.Pid) {
			t.Fatalf("kvx agent exited:\n%s", p.log.String())
		}
		return false
	})
	c, err := client.New(client.Options{Address: p.http})
	if err != nil {
		t.Fatal(err)
	}
	p.c = c
	return p
}

func serfHealth(c *consulapi.Client, node string) string {
	checks, _, err := c.Health().Node(node, nil)
	if err != nil {
		return ""
	}
	for _, ck := range checks {
		if ck.CheckID == "serfHealth" {
			return ck.Status
		}
	}
	return ""
}

func passingCount(c *consulapi.Client, service string) int {
	e, _, err := c.Health().Service(service, "", true, nil)
	if err != nil {
		return -1
	}
	return len(e)
}

// A `kvx agent` process: its node is critical within -node-timeout after a
// SIGKILL and its service leaves ?passing; back after a restart; SIGHUP
// reloads its config dir (a bad file is refused and logged, the running
// definitions stay); SIGTERM leaves the catalog and exits 0.
func TestAgentProcessKillRestartReloadLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end with real processes: skipped under -short")
	}
	const nodeTimeout = time.Second
	srv := servertest.Start(t, func(o *server.Options) { o.NodeTimeout = nodeTimeout })
	bin := buildKVX(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.json"), []byte(`{"service": {"name": "web", "port": 80, "check": {"ttl": "1h", "status": "passing"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-join", srv.HTTPAddr(), "-node", "proc-agent", "-config-dir", dir}
	p := startAgentProc(t, bin, args...)
	servertest.Eventually(t, "the agent's node alive and web passing", func() bool {
		return serfHealth(srv.Client, "proc-agent") == "passing" && passingCount(srv.Client, "web") == 1
	})

	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	killed := time.Now()
	servertest.Eventually(t, "the killed agent's node critical", func() bool {
		return serfHealth(srv.Client, "proc-agent") == "critical"
	})
	t.Logf("node critical %v after SIGKILL (-node-timeout %v)", time.Since(killed).Round(time.Millisecond), nodeTimeout)
	if n := passingCount(srv.Client, "web"); n != 0 {
		t.Fatalf("web of a dead node: %d passing", n)
	}

	p = startAgentProc(t, bin, args...)
	servertest.Eventually(t, "the restarted agent's node passing", func() bool {
		return serfHealth(srv.Client, "proc-agent") == "passing" && passingCount(srv.Client, "web") == 1
	})

	// SIGHUP with a new file; then with a bad one.
	if err := os.WriteFile(filepath.Join(dir, "api.json"), []byte(`{"service": {"name": "api", "port": 81}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "api registered after SIGHUP", func() bool { return passingCount(srv.Client, "api") == 1 })
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"service": {"name": "bad", "port": "x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the refused reload logged", func() bool {
		return strings.Contains(p.log.String(), "bad.json: service.port")
	})
	if svcs, err := p.c.Agent().Services(); err != nil || len(svcs) != 2 {
		t.Fatalf("services after a refused reload = %v, %v; want web and api", svcs, err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent after SIGTERM: %v\n%s", err, p.log.String())
	}
	if n, _, err := srv.Client.Catalog().Node("proc-agent", nil); err != nil || n != nil {
		t.Fatalf("the node after SIGTERM = %+v, %v; want it gone", n, err)
	}
}

// kvx agent -validate: 0 on a good dir, 1 naming the file and field.
func TestAgentValidate(t *testing.T) {
	var out, errb strings.Builder
	code := Main(t.Context(), "kvx", []string{"agent", "-validate", "-enable-script-checks", "-config-dir", "../../testdata/agent"}, nil, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "valid") {
		t.Fatalf("validate testdata/agent: %d %s %s", code, out.String(), errb.String())
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.json"), []byte(`{"service": {"name": "web", "check": {"http": "http://x", "interval": "10x"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	code = Main(t.Context(), "kvx", []string{"agent", "-validate", "-config-dir", dir}, nil, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "web.json: service.check.interval") {
		t.Fatalf("validate a bad dir: code %d, stderr %q", code, errb.String())
	}
}

// kvx demo registers its simulated nodes' web services, passing.
func TestDemoRegistersServices(t *testing.T) {
	srv := servertest.Start(t)
	var out strings.Builder
	if err := demoCatalog(t.Context(), &out, srv.HTTPAddr(), 7); err != nil {
		t.Fatal(err)
	}
	if n := passingCount(srv.Client, "web"); n != 7 || !strings.Contains(out.String(), "has 7 instances") {
		t.Fatalf("web ?passing = %d; output %q", n, out.String())
	}
	node, _, err := srv.Client.Catalog().Node("node-003", nil)
	if err != nil || node == nil || node.Node.Address != "10.0.0.4" {
		t.Fatalf("node-003 = %+v, %v", node, err)
	}
}

// A `kvx agent` process answers DNS from the servers' catalog: a passing
// instance's address, gone once its check turns critical.
func TestAgentProcessAnswersDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end with real processes: skipped under -short")
	}
	srv := servertest.Start(t)
	if _, err := srv.Client.Catalog().Register(&consulapi.CatalogRegistration{Node: "web-1", Address: "10.9.0.1",
		Service: &consulapi.AgentService{ID: "web", Service: "web", Port: 80},
		Check:   &consulapi.AgentCheck{Node: "web-1", CheckID: "web-ok", Name: "ok", Status: consulapi.HealthPassing, ServiceID: "web"}}, nil); err != nil {
		t.Fatal(err)
	}
	p := startAgentProc(t, buildKVX(t), "-join", srv.HTTPAddr(), "-node", "dns-agent", "-dns-addr", "127.0.0.1:0")
	dnsLine := regexp.MustCompile(`msg="dns started" addr=(127\.0\.0\.1:\d+)`)
	var addr string
	servertest.Eventually(t, "the agent's DNS", func() bool {
		if m := dnsLine.FindStringSubmatch(p.log.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	answers := func() []string {
		var out []string
		for _, rr := range dnsQuery(t, addr, "web.service.consul.", dns.TypeA).Answer {
			if a, ok := rr.(*dns.A); ok {
				out = append(out, a.A.String())
			}
		}
		return out
	}
	servertest.Eventually(t, "web.service.consul answered by the agent", func() bool {
		a := answers()
		return len(a) == 1 && a[0] == "10.9.0.1"
	})
	if _, err := srv.Client.Catalog().Register(&consulapi.CatalogRegistration{Node: "web-1", Address: "10.9.0.1",
		Check: &consulapi.AgentCheck{Node: "web-1", CheckID: "web-ok", Name: "ok", Status: consulapi.HealthCritical, ServiceID: "web"}}, nil); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the critical instance gone from the agent's answer", func() bool { return len(answers()) == 0 })
}
