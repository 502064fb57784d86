package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
	"github.com/kvxproject/kvx/pkg/transport"
)

func registerAt(t *testing.T, c *consulapi.Client, node, addr, id, svc, status string, tags ...string) {
	t.Helper()
	_, err := c.Catalog().Register(&consulapi.CatalogRegistration{Node: node, Address: addr,
		Service: &consulapi.AgentService{ID: id, Service: svc, Tags: tags, Port: 80},
		Checks:  consulapi.HealthChecks{{Node: node, CheckID: "c-" + id, Name: "c", Status: status, ServiceID: id}}}, nil)
	if err != nil {
		t.Fatalf("register %s on %s: %v", svc, node, err)
	}
}

func TestHostsgenFileMode(t *testing.T) {
	srv := servertest.Start(t)
	registerAt(t, srv.Client, "h1", "10.3.0.1", "web", "web", "passing", "blue")
	registerAt(t, srv.Client, "h2", "10.3.0.2", "web", "web", "passing")
	registerAt(t, srv.Client, "h3", "10.3.0.3", "evil", "web", "passing", "x\n6.6.6.6 bank")
	dir := t.TempDir()
	out, marker := filepath.Join(dir, "hosts"), filepath.Join(dir, "ran")
	args := []string{"hostsgen", "-http-addr", srv.HTTPAddr(), "-o", out, "-exclude-service", "consul",
		"-e", "echo ran >> " + marker, "-nodes"}
	_, stderr, code := run(t, context.Background(), args...)
	if code != 0 {
		t.Fatalf("hostsgen: exit %d, %s", code, stderr)
	}
	want := "10.3.0.1 blue.web.service.consul\n10.3.0.1 h1.node.consul\n10.3.0.2 h2.node.consul\n10.3.0.3 h3.node.consul\n" +
		"10.3.0.1 web.service.consul\n10.3.0.2 web.service.consul\n10.3.0.3 web.service.consul\n"
	if got, _ := os.ReadFile(out); string(got) != want {
		t.Fatalf("hosts file:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(stderr, `node=h3 service=web`) || !strings.Contains(stderr, "is not a DNS label") {
		t.Fatalf("no warning naming node and service of the crafted tag: %s", stderr)
	}
	st1, _ := os.Stat(out)
	// Unchanged catalog: the file is not rewritten, -e does not run.
	if _, stderr, code := run(t, context.Background(), args...); code != 0 {
		t.Fatalf("second run: %d %s", code, stderr)
	}
	st2, _ := os.Stat(out)
	if st1.Sys().(*syscall.Stat_t).Ino != st2.Sys().(*syscall.Stat_t).Ino {
		t.Fatal("an unchanged file was replaced")
	}
	if b, _ := os.ReadFile(marker); string(b) != "ran\n" {
		t.Fatalf("-e ran %q times, want once", b)
	}
	// The same with CONSUL_HTTP_ADDR instead of -http-addr, and the kvx tool's main.
	t.Setenv("CONSUL_HTTP_ADDR", srv.HTTPAddr())
	var o, e servertest.Buffer
	if code := Main(context.Background(), "hostsgen", []string{"-service", "web", "-tag", "blue"}, strings.NewReader(""), &o, &e); code != 0 || o.String() != "10.3.0.1 blue.web.service.consul\n10.3.0.1 web.service.consul\n" {
		t.Fatalf("hostsgen main with CONSUL_HTTP_ADDR: exit %d, %q, %s", code, o.String(), e.String())
	}
}

func TestHostsgenShrinkGuardExit3(t *testing.T) {
	srv := servertest.Start(t)
	for i := range 4 {
		registerAt(t, srv.Client, fmt.Sprintf("s%d", i), fmt.Sprintf("10.4.0.%d", i+1), "web", "web", "passing")
	}
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"hostsgen", "-http-addr", srv.HTTPAddr(), "-service", "web", "-state", state}
	if out, stderr, code := run(t, context.Background(), args...); code != 0 || strings.Count(out, "\n") != 4 {
		t.Fatalf("first: %d %q %s", code, out, stderr)
	}
	for i := range 3 {
		registerAt(t, srv.Client, fmt.Sprintf("s%d", i), fmt.Sprintf("10.4.0.%d", i+1), "web", "web", "critical")
	}
	out, stderr, code := run(t, context.Background(), args...)
	if code != exitRefused || out != "" || !strings.Contains(stderr, "refusing to publish 1 entries where the last file had 4") {
		t.Fatalf("75%% shrink: exit %d, stdout %q, stderr %s; want exit 3, nothing on stdout", code, out, stderr)
	}
	out, stderr, code = run(t, context.Background(), append(args, "-force")...)
	if code != 0 || out != "10.4.0.4 web.service.consul\n" {
		t.Fatalf("-force: %d %q %s", code, out, stderr)
	}
	// The default state file lives in the user cache dir.
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	if _, stderr, code := run(t, context.Background(), "hostsgen", "-http-addr", srv.HTTPAddr()); code != 0 {
		t.Fatal(stderr)
	}
	if m, _ := filepath.Glob(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "kvx", "hostsgen-*.json")); len(m) != 1 {
		t.Fatalf("default state file: %v", m)
	}
}

func TestHostsgenUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-watch"}, "-watch writes a file: give -o FILE"},
		{[]string{"-wait", "1s"}, "-wait is for -watch"},
		{[]string{"-watch", "-o", "x", "-wait", "5s:1s"}, "MAX must be"},
		{[]string{"-max-shrink", "150%"}, `-max-shrink "150%"`},
		{[]string{"-node-meta", "rack"}, `-node-meta "rack": want key:value`},
		{[]string{"-domain", "bad domain"}, `-domain "bad domain"`},
		{[]string{"-o", "x", "-state", "y"}, "-state is for stdout mode"},
	} {
		_, stderr, code := run(t, context.Background(), append([]string{"hostsgen", "-http-addr", "127.0.0.1:1"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// The catalog unreachable: exit 1, nothing written.
	out := filepath.Join(t.TempDir(), "hosts")
	if _, stderr, code := run(t, context.Background(), "hostsgen", "-http-addr", "127.0.0.1:1", "-o", out); code != exitError || !strings.Contains(stderr, "read the catalog") {
		t.Fatalf("unreachable: %d %s", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a file was written without a catalog")
	}
}

func TestHostsgenWatch(t *testing.T) {
	srv := servertest.Start(t)
	registerAt(t, srv.Client, "w1", "10.5.0.1", "web", "web", "passing")
	registerAt(t, srv.Client, "w2", "10.5.0.2", "web", "web", "passing")
	dir := t.TempDir()
	out, marker := filepath.Join(dir, "hosts"), filepath.Join(dir, "ran")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var errOut servertest.Buffer
	go func() {
		done <- execute(ctx, []string{"hostsgen", "-http-addr", srv.HTTPAddr(), "-service", "web", "-o", out, "-watch", "-wait", "50ms:500ms",
			"-e", "echo ran >> " + marker}, strings.NewReader(""), &servertest.Buffer{}, &errOut)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	read := func() string { b, _ := os.ReadFile(out); return string(b) }
	servertest.Eventually(t, "the first file", func() bool {
		return read() == "10.5.0.1 web.service.consul\n10.5.0.2 web.service.consul\n"
	})
	registerAt(t, srv.Client, "w2", "10.5.0.2", "web", "web", "critical")
	servertest.Eventually(t, "w2 gone from the file", func() bool { return read() == "10.5.0.1 web.service.consul\n" })
	registerAt(t, srv.Client, "w3", "10.5.0.3", "web", "web", "passing")
	servertest.Eventually(t, "w3 in the file", func() bool {
		return read() == "10.5.0.1 web.service.consul\n10.5.0.3 web.service.consul\n"
	})
	servertest.Eventually(t, "-e after each of the 3 changes", func() bool {
		b, _ := os.ReadFile(marker)
		return strings.Count(string(b), "ran") == 3
	})
}

// -lock: of two watching hostsgen instances only the lock holder
// publishes; when it stops, the other takes the lock (consul lock's key and
// flag) and publishes.
func TestHostsgenLockElectsOnePublisher(t *testing.T) {
	srv := servertest.Start(t)
	registerAt(t, srv.Client, "w1", "10.6.0.1", "web", "web", "passing")
	dir := t.TempDir()
	type instance struct {
		out    string
		cancel context.CancelFunc
		done   chan error
	}
	start := func(name string) *instance {
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{out: filepath.Join(dir, name), cancel: cancel, done: make(chan error, 1)}
		go func() {
			in.done <- execute(ctx, []string{"hostsgen", "-http-addr", srv.HTTPAddr(), "-o", in.out, "-watch", "-lock", "locks/hosts"},
				strings.NewReader(""), &servertest.Buffer{}, &servertest.Buffer{})
		}()
		t.Cleanup(func() { cancel(); <-in.done })
		return in
	}
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }
	a, b := start("a"), start("b")
	var holder, spare *instance
	servertest.Eventually(t, "one instance publishing", func() bool {
		switch {
		case exists(a.out):
			holder, spare = a, b
		case exists(b.out):
			holder, spare = b, a
		}
		return holder != nil
	})
	p, _, err := srv.Client.KV().Get("locks/hosts/.lock", nil)
	if err != nil || p == nil || p.Session == "" || p.Flags != consulapi.LockFlagValue {
		t.Fatalf("lock key = %+v, %v; want consul lock's, held by a session", p, err)
	}
	// A catalog change reaches the holder's file; the spare still has none.
	registerAt(t, srv.Client, "w2", "10.6.0.2", "web", "web", "passing")
	servertest.Eventually(t, "the change published by the holder", func() bool {
		b, _ := os.ReadFile(holder.out)
		return strings.Contains(string(b), "10.6.0.2")
	})
	if exists(spare.out) {
		t.Fatal("both instances published")
	}
	holder.cancel()
	if err := <-holder.done; err != nil {
		t.Fatalf("the holder stopped with %v", err)
	}
	holder.done <- nil // for the cleanup
	servertest.Eventually(t, "the spare publishing after the holder stopped", func() bool {
		b, _ := os.ReadFile(spare.out)
		return strings.Contains(string(b), "10.6.0.1") && strings.Contains(string(b), "10.6.0.2")
	})
}

// The demo's hosts step: catalog -> hostsgen -> the push, and again after
// a check turned critical; on an empty catalog (it registers services) and
// on one the demo's fleet already filled (web on every node, as
// demo_catalog.go registers them).
func TestDemoHosts(t *testing.T) {
	for _, filled := range []bool{false, true} {
		t.Run(fmt.Sprintf("filled=%v", filled), func(t *testing.T) {
			srv := servertest.Start(t)
			gone := "10.2.0.11 api.service.consul\n" // api on app-1: first by service and node
			if filled {
				for i := range 20 {
					registerAt(t, srv.Client, fmt.Sprintf("node-%03d", i), fmt.Sprintf("10.0.0.%d", i+1), "web", "web", "passing", "demo")
				}
				gone = "10.0.0.1 web.service.consul\n"
			}
			var pushed [][]byte
			push := func(b []byte, _ string) (transport.PushResult, error) {
				pushed = append(pushed, append([]byte{}, b...))
				return transport.PushResult{Diff: "diff\n"}, nil
			}
			var out strings.Builder
			if err := demoHosts(context.Background(), &out, srv.HTTPAddr(), push); err != nil {
				t.Fatal(err)
			}
			if len(pushed) != 2 || !strings.Contains(string(pushed[0]), gone) || strings.Contains(string(pushed[1]), gone) {
				t.Fatalf("pushed %q; want %q in the first file only", pushed, gone)
			}
			registered := strings.Contains(out.String(), "registered 7 instances of web, api and db on 5 nodes")
			if registered == filled {
				t.Fatalf("filled %v, demo output: %s", filled, out.String())
			}
			if filled && !strings.Contains(out.String(), "... (48 more lines)") {
				t.Fatalf("the 60-line file is not cut to 12 lines: %s", out.String())
			}
		})
	}
}
