package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
	"github.com/spf13/pflag"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// startDNSServer runs `kvx server -dev` in process with extra flags and
// returns its HTTP and DNS addresses.
func startDNSServer(t *testing.T, flags ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var errOut servertest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- execute(ctx, append([]string{"server", "-dev", "-node", "dns-node", "-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"}, flags...),
			strings.NewReader(""), &servertest.Buffer{}, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	ready := regexp.MustCompile(`msg=ready node=dns-node http=(127\.0\.0\.1:\d+)`)
	dnsLine := regexp.MustCompile(`msg="dns started" addr=(127\.0\.0\.1:\d+)`)
	var httpAddr, dnsAddr string
	servertest.Eventually(t, "the server ready", func() bool {
		m, d := ready.FindStringSubmatch(errOut.String()), dnsLine.FindStringSubmatch(errOut.String())
		if m != nil && d != nil {
			httpAddr, dnsAddr = m[1], d[1]
		}
		return httpAddr != ""
	})
	return httpAddr, dnsAddr
}

func dnsQuery(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, err := dns.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

func registerWeb(t *testing.T, c *consulapi.Client, node, addr, status string) {
	t.Helper()
	_, err := c.Catalog().Register(&consulapi.CatalogRegistration{Node: node, Address: addr,
		Service: &consulapi.AgentService{ID: "web", Service: "web", Tags: []string{"blue"}, Port: 80},
		Checks:  consulapi.HealthChecks{{Node: node, CheckID: "web-check", Name: "web", Status: status, ServiceID: "web"}}}, nil)
	if err != nil {
		t.Fatalf("register web on %s: %v", node, err)
	}
}

// The DNS flags of kvx server reach the DNS interface.
func TestServerDNSFlags(t *testing.T) {
	httpAddr, dnsAddr := startDNSServer(t, "-dns-addr", "127.0.0.1:0", "-domain", "kvx", "-dns-node-ttl", "7s",
		"-dns-service-ttl", "web=30s", "-dns-service-ttl", "*=5s", "-dns-only-passing=false", "-dns-udp-answer-limit", "2")
	c, err := client.New(client.Options{Address: httpAddr})
	if err != nil {
		t.Fatal(err)
	}
	registerWeb(t, c, "w1", "10.0.0.1", "passing")
	registerWeb(t, c, "w2", "10.0.0.2", "warning")
	registerWeb(t, c, "w3", "10.0.0.3", "passing")
	r := dnsQuery(t, dnsAddr, "web.service.kvx.", dns.TypeA)
	if len(r.Answer) != 2 || r.Answer[0].Header().Ttl != 30 {
		t.Fatalf("web.service.kvx: %v; want 2 answers (the limit) with TTL 30", r.Answer)
	}
	seen := map[string]bool{}
	servertest.Eventually(t, "the warning instance answered (-dns-only-passing=false)", func() bool {
		for _, rr := range dnsQuery(t, dnsAddr, "web.service.kvx.", dns.TypeA).Answer {
			seen[rr.(*dns.A).A.String()] = true
		}
		return seen["10.0.0.2"]
	})
	if r := dnsQuery(t, dnsAddr, "w1.node.kvx.", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 7 {
		t.Fatalf("w1.node.kvx: %v; want TTL 7", r.Answer)
	}
	if r := dnsQuery(t, dnsAddr, "consul.service.kvx.", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 5 {
		t.Fatalf("consul.service.kvx: %v; want the server with TTL 5", r.Answer)
	}
	if r := dnsQuery(t, dnsAddr, "web.service.consul.", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("the default domain under -domain kvx: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func TestServerDNSFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-dns-service-ttl", "web"}, `-dns-service-ttl "web": want name=ttl`},
		{[]string{"-dns-service-ttl", "web=soon"}, `-dns-service-ttl "web=soon"`},
		{[]string{"-dns-service-ttl", "w*b=1s"}, `-dns-service-ttl "w*b"`},
		{[]string{"-dns-udp-answer-limit", "9"}, "-dns-udp-answer-limit 9: must be from 1 to 8"},
		{[]string{"-dns-udp-answer-limit", "0"}, "-dns-udp-answer-limit 0: must be from 1 to 8"},
		{[]string{"-dns-addr", "nowhere"}, `-dns-addr "nowhere"`},
		{[]string{"-dns-recursors", "1.2.3.4:x"}, `-dns-recursors "1.2.3.4:x"`},
		{[]string{"-domain", "a b"}, `-domain "a b."`},
		{[]string{"-dns-addr", "off", "-dns-node-ttl", "1s"}, `-dns-node-ttl: DNS is off`},
	} {
		_, stderr, code := run(t, context.Background(), append([]string{"server", "-dev", "-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// -dns-addr off: no DNS, and nothing listens.
func TestServerDNSOff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var errOut servertest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- execute(ctx, []string{"server", "-dev", "-node", "nodns", "-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0", "-dns-addr", "off"},
			strings.NewReader(""), &servertest.Buffer{}, &errOut)
	}()
	servertest.Eventually(t, "ready", func() bool { return strings.Contains(errOut.String(), "msg=ready") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errOut.String(), "dns started") || !strings.Contains(errOut.String(), `dns=""`) {
		t.Fatalf("DNS started with -dns-addr off: %s", errOut.String())
	}
}

// dnsmasq runs the real dnsmasq on a free loopback port, unprivileged, in
// the foreground, until the test ends. It fails (never skips) when dnsmasq
// is missing: .ci/run installs it.
type dnsmasqProc struct {
	cmd  *exec.Cmd
	port int
	log  *servertest.Buffer
}

func startDnsmasq(t *testing.T, args ...string) *dnsmasqProc {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq is required (apt-get install dnsmasq): %v", err)
	}
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		_, p, _ := net.SplitHostPort(servertest.FreeAddr(t))
		port, _ := strconv.Atoi(p)
		d := &dnsmasqProc{port: port, log: &servertest.Buffer{}}
		full := append([]string{"--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-daemon", "--log-facility=-",
			"--listen-address=127.0.0.1", "--bind-interfaces", "--port=" + p, "--pid-file=" + filepath.Join(dir, "dnsmasq.pid"),
			"--cache-size=0"}, unprivileged(t)...)
		d.cmd = exec.Command(bin, append(full, args...)...)
		d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
		if err := d.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Up when it answers a query (REFUSED or NXDOMAIN: anything).
		up := false
		deadline := time.Now().Add(30 * time.Second)
		for !up && !exited(d.cmd.Process.Pid) && time.Now().Before(deadline) {
			m := new(dns.Msg)
			m.SetQuestion("probe.invalid.", dns.TypeA)
			c := &dns.Client{Timeout: 200 * time.Millisecond}
			_, _, err := c.Exchange(m, net.JoinHostPort("127.0.0.1", p))
			up = err == nil
		}
		if up {
			t.Cleanup(func() {
				_ = d.cmd.Process.Signal(os.Interrupt)
				done := make(chan struct{})
				go func() { _ = d.cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = d.cmd.Process.Kill()
					<-done
				}
			})
			return d
		}
		_ = d.cmd.Process.Kill()
		_ = d.cmd.Wait()
		if attempt == 5 || !strings.Contains(d.log.String(), "in use") {
			t.Fatalf("dnsmasq %v did not start:\n%s", args, d.log.String())
		}
	}
}

// unprivileged are the flags that make dnsmasq run as nobody when the test
// runs as root, or stay the current user.
func unprivileged(t *testing.T) []string {
	if os.Geteuid() == 0 {
		return []string{"--user=nobody", "--group=nogroup"}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--user=" + u.Username}
}

// dig asks dnsmasq with the real dig and returns its +short lines.
func (d *dnsmasqProc) dig(t *testing.T, name string) []string {
	t.Helper()
	bin, err := exec.LookPath("dig")
	if err != nil {
		t.Fatalf("dig is required (apt-get install bind9-dnsutils): %v", err)
	}
	out, err := exec.Command(bin, "@127.0.0.1", "-p", strconv.Itoa(d.port), "+short", "+tries=2", "+time=2", name, "A").CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s\ndnsmasq:\n%s", name, err, out, d.log.String())
	}
	var lines []string
	for l := range strings.Lines(string(out)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// dnsmasq forwards the consul domain to kvx's DNS: dig resolves
// web.service.consul through it, and a check going critical takes the
// instance out.
func TestDnsmasqForwardsToKVXDNS(t *testing.T) {
	srv := servertest.Start(t, servertest.WithDNS())
	registerWeb(t, srv.Client, "web-1", "10.7.0.1", "passing")
	registerWeb(t, srv.Client, "web-2", "10.7.0.2", "passing")
	_, port, _ := net.SplitHostPort(srv.DNSAddr())
	d := startDnsmasq(t, fmt.Sprintf("--server=/consul/127.0.0.1#%s", port))
	got := d.dig(t, "web.service.consul")
	if strings.Join(sorted(got), " ") != "10.7.0.1 10.7.0.2" {
		t.Fatalf("dig web.service.consul through dnsmasq: %q\ndnsmasq:\n%s", got, d.log.String())
	}
	registerWeb(t, srv.Client, "web-2", "10.7.0.2", "critical")
	servertest.Eventually(t, "web-2 out of dnsmasq's answer", func() bool {
		return strings.Join(d.dig(t, "web.service.consul"), " ") == "10.7.0.1"
	})
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// The Datadog pipeline with real processes: hostsgen | kvx in publishes
// the healthy catalog as a hosts file, kvx out delivers it, dnsmasq
// answers dig from it; after a check turns critical and the pipeline runs
// again (then SIGHUP to dnsmasq), the instance's address is gone.
func TestDnsmasqAnswersFromHostsgenFile(t *testing.T) {
	bin := buildKVX(t)
	srv := servertest.Start(t)
	registerWeb(t, srv.Client, "web-1", "10.8.0.1", "passing")
	registerWeb(t, srv.Client, "web-2", "10.8.0.2", "passing")
	registerWeb(t, srv.Client, "web-3", "10.8.0.3", "passing")
	// dnsmasq runs as nobody: the delivered file must be readable by it.
	dir, err := os.MkdirTemp("", "kvx-hosts-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "consul.hosts")
	state := filepath.Join(t.TempDir(), "hostsgen.json")
	pipeline := func() {
		t.Helper()
		sh := fmt.Sprintf("set -e -o pipefail; %[1]s hostsgen -http-addr %[2]s -state %[3]s | %[1]s in -k hosts -f - -http-addr %[2]s -node pusher; %[1]s out -k hosts -f %[4]s -http-addr %[2]s -node dnsmasq-host",
			bin, srv.HTTPAddr(), state, hosts)
		if out, err := exec.Command("bash", "-c", sh).CombinedOutput(); err != nil {
			t.Fatalf("pipeline: %v\n%s", err, out)
		}
	}
	pipeline()
	b, err := os.ReadFile(hosts)
	if err != nil || !strings.Contains(string(b), "10.8.0.2 web.service.consul\n") {
		t.Fatalf("delivered hosts file: %q, %v", b, err)
	}
	d := startDnsmasq(t, "--addn-hosts="+hosts)
	if got := strings.Join(sorted(d.dig(t, "web.service.consul")), " "); got != "10.8.0.1 10.8.0.2 10.8.0.3" {
		t.Fatalf("dig web.service.consul from the hosts file: %q\ndnsmasq:\n%s", got, d.log.String())
	}
	if got := strings.Join(d.dig(t, "blue.web.service.consul"), " "); !strings.Contains(got, "10.8.0.2") {
		t.Fatalf("dig blue.web.service.consul: %q", got)
	}
	registerWeb(t, srv.Client, "web-2", "10.8.0.2", "critical")
	pipeline()
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "10.8.0.2 out of dnsmasq's answer", func() bool {
		return strings.Join(sorted(d.dig(t, "web.service.consul")), " ") == "10.8.0.1 10.8.0.3"
	})
}

// What kvx agent will call: the DNS flags as a listener reading through
// the agent's Call.
func TestDNSFlagsListener(t *testing.T) {
	srv := servertest.Start(t)
	registerWeb(t, srv.Client, "a1", "10.9.0.1", "passing")
	api, err := client.New(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	call := func(_ context.Context, f func(*consulapi.Client) error) error { return f(api) }
	parse := func(args ...string) (*dnsFlags, *pflag.FlagSet) {
		var d dnsFlags
		f := pflag.NewFlagSet("agent", pflag.ContinueOnError)
		d.register(f)
		if err := f.Parse(args); err != nil {
			t.Fatal(err)
		}
		return &d, f
	}
	d, f := parse("--dns-addr", "127.0.0.1:0", "--dns-service-ttl", "web=9s")
	l, err := d.listener(f, call, slog.New(slog.DiscardHandler))
	if err != nil || l == nil {
		t.Fatalf("listener: %v, %v", l, err)
	}
	if err := l.Bind(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	servertest.Eventually(t, "web through the listener", func() bool {
		r := dnsQuery(t, l.Addr(), "web.service.consul.", dns.TypeA)
		return len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "10.9.0.1" && r.Answer[0].Header().Ttl == 9
	})
	// DNS off: no listener.
	d, f = parse("--dns-addr", "off")
	if l, err := d.listener(f, call, slog.New(slog.DiscardHandler)); l != nil || err != nil {
		t.Fatalf("-dns-addr off: %v, %v", l, err)
	}
	// A bad value: an error (the agent's usage error).
	d, f = parse("--dns-udp-answer-limit", "0")
	if _, err := d.listener(f, call, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("-dns-udp-answer-limit 0 accepted")
	}
}
