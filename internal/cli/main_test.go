package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// run executes kvx in-process and returns stdout, stderr and the exit code.
func run(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut servertest.Buffer
	err := execute(ctx, args, strings.NewReader(""), &out, &errOut)
	code := exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, context.Background(), "version")
	if code != 0 || !strings.HasPrefix(out, "kvx dev (go") {
		t.Fatalf("version = %q, exit %d", out, code)
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"frobnicate"}, exitUsage, "unknown command"},
		{[]string{"server", "--no-such-flag"}, exitUsage, "unknown flag"},
		{[]string{"server", "-bootstrap-expect", "many"}, exitUsage, "invalid argument"},
		{[]string{"server", "-node", "x", "-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"}, exitUsage, "data dir is required"},
		{[]string{"server", "-dev", "-log-level", "loud"}, exitUsage, "log level"},
		{[]string{"server", "-dev", "-gc-min-heap", "-1"}, exitUsage, "-gc-min-heap -1"},
		{[]string{"bench", "kv", "-writers", "0", "-readers", "0"}, exitError, "need at least one worker"},
	}
	for _, tc := range tests {
		_, stderr, code := run(t, context.Background(), tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("kvx %q: exit %d, stderr %q; want exit %d with %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

// Bad server options are usage errors (exit 2), found before anything is
// opened or bound: the data dir is not created, no port is taken.
func TestServerUsageErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-created")
	tests := []struct {
		args []string
		msg  string
	}{
		{[]string{"server"}, "a data dir is required"},
		{[]string{"server", "-node", "n1"}, "a data dir is required"},
		{[]string{"server", "-dev", "-data-dir", dir}, "-dev keeps everything in memory: drop -data-dir"},
		{[]string{"server", "-data-dir", dir, "-bootstrap-expect", "-1"}, "-bootstrap-expect -1: must be 0 or more"},
		{[]string{"server", "-data-dir", dir, "-http-addr", "127.0.0.1:65536"}, `-http-addr "127.0.0.1:65536": port "65536" is not a number from 0 to 65535`},
		{[]string{"server", "-data-dir", dir, "-raft-addr", "127.0.0.1:-1"}, `-raft-addr "127.0.0.1:-1": port "-1"`},
		{[]string{"server", "-data-dir", dir, "-http-addr", "localhost"}, `-http-addr "localhost": want host:port`},
		{[]string{"server", "-data-dir", dir, "-raft-addr", "0.0.0.0:8300"}, "give a routable address"},
		{[]string{"server", "-data-dir", dir, "-join", "10.0.0.1"}, `-join "10.0.0.1": want host:port`},
		{[]string{"server", "-dev", "-join", "127.0.0.1:8301"}, "-dev runs one node alone"},
		{[]string{"server", "-dev", "-raft-timeout", "-1s"}, "-raft-timeout -1s"},
	}
	for _, tc := range tests {
		_, stderr, code := run(t, context.Background(), tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.msg) {
			t.Errorf("kvx %q: exit %d, stderr %q; want exit 2 with %q", tc.args, code, stderr, tc.msg)
		}
		if strings.Contains(stderr, "server started") || strings.Contains(stderr, "server stopped") {
			t.Errorf("kvx %q started a server before refusing its options: %q", tc.args, stderr)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a refused start touched its data dir: %v", err)
	}
}

// A server that cannot bind its port exits 1, and does not say it stopped a
// server that never started.
func TestServerPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, stderr, code := run(t, context.Background(), "server", "-dev", "-http-addr", ln.Addr().String(), "-raft-addr", "127.0.0.1:0")
	if code != exitError || !strings.Contains(stderr, "address already in use") {
		t.Fatalf("server on a taken port: exit %d, stderr %q; want exit 1, address already in use", code, stderr)
	}
	if strings.Contains(stderr, "server stopped") {
		t.Fatalf("a server that never started logged that it stopped: %q", stderr)
	}
}

// KVX_* variables count as flags: one that contradicts the data dir's
// identity is refused like the flag, and the flag wins over the variable.
func TestServerEnvironmentAgainstStoredIdentity(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var errOut servertest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- execute(ctx, []string{"server", "-data-dir", dir, "-node", "stored", "-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0", "-raft-timeout", "100ms"},
			strings.NewReader(""), &servertest.Buffer{}, &errOut)
	}()
	servertest.Eventually(t, "the first start", func() bool { return strings.Contains(errOut.String(), "msg=ready") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first start: %v", err)
	}
	t.Setenv("KVX_NODE", "other")
	_, stderr, code := run(t, context.Background(), "server", "-data-dir", dir)
	if code != exitUsage || !strings.Contains(stderr, `belongs to -node "stored"`) || !strings.Contains(stderr, `-node is "other"`) {
		t.Fatalf("KVX_NODE=other on a data dir of node stored: exit %d, %q; want exit 2 naming both", code, stderr)
	}
	t.Setenv("KVX_NODE", "stored")
	_, stderr, code = run(t, context.Background(), "server", "-data-dir", dir, "-node", "flagged")
	if code != exitUsage || !strings.Contains(stderr, `-node is "flagged"`) {
		t.Fatalf("-node flagged with KVX_NODE=stored: exit %d, %q; want the flag's value refused", code, stderr)
	}
}

func TestConsulStyleArgs(t *testing.T) {
	root := newKVXCmd()
	got := consulStyleArgs(root, []string{"server", "-dev", "-data-dir=/x", "-h", "--node", "n", "-join", "a", "--", "-dev"})
	want := []string{"server", "--dev", "--data-dir=/x", "-h", "--node", "n", "--join", "a", "--", "-dev"}
	if !slices.Equal(got, want) {
		t.Fatalf("consulStyleArgs = %q, want %q", got, want)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("KVX_DURATION", "not-a-duration")
	_, stderr, code := run(t, context.Background(), "bench", "kv")
	if code != exitUsage || !strings.Contains(stderr, "KVX_DURATION") {
		t.Fatalf("bad KVX_DURATION: exit %d, %q", code, stderr)
	}
}

func TestServerCommandServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut servertest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- execute(ctx, []string{"server", "-dev", "-node", "cli-node", "-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"},
			strings.NewReader(""), &out, &errOut)
	}()
	ready := regexp.MustCompile(`msg=ready node=cli-node http=(127\.0\.0\.1:\d+)`)
	var addr string
	deadline := time.Now().Add(30 * time.Second)
	for addr == "" {
		if m := ready.FindStringSubmatch(errOut.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("server never logged ready: %q", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := client.New(client.Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV().Put(&consulapi.KVPair{Key: "cli", Value: []byte("ok")}, nil); err != nil {
		t.Fatal(err)
	}
	if name, err := c.Agent().NodeName(); err != nil || name != "cli-node" {
		t.Fatalf("node name = %q, %v", name, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop on cancel")
	}
	if out.String() != "" {
		t.Fatalf("server wrote to stdout: %q", out.String())
	}
}

func TestBenchKV(t *testing.T) {
	srv := servertest.Start(t)
	out, stderr, code := run(t, context.Background(), "bench", "kv", "-addr", srv.HTTPAddr(),
		"-duration", "300ms", "-writers", "4", "-readers", "4", "-keys", "50", "-prefix", "b/")
	if code != 0 {
		t.Fatalf("bench: exit %d, %s", code, stderr)
	}
	line := regexp.MustCompile(`(?m)^(PUT|GET)\s+4 workers\s+(\d+) ops .* errors 0$`)
	m := line.FindAllStringSubmatch(out, -1)
	if len(m) != 2 || m[0][1] != "PUT" || m[1][1] != "GET" || m[0][2] == "0" || m[1][2] == "0" {
		t.Fatalf("bench output %q", out)
	}
	if pairs, _, err := srv.Client.KV().List("b/", nil); err != nil || len(pairs) != 0 {
		t.Fatalf("bench left %d keys behind (%v)", len(pairs), err)
	}
}

// With -server-pid the bench samples the server's resident memory (here the
// test process, which runs the server) and prints its peak per phase.
func TestBenchKVServerRSS(t *testing.T) {
	srv := servertest.Start(t)
	out, stderr, code := run(t, context.Background(), "bench", "kv", "-addr", srv.HTTPAddr(),
		"-duration", "300ms", "-writers", "2", "-readers", "2", "-keys", "20", "-prefix", "rss/", "-server-pid", strconv.Itoa(os.Getpid()))
	if code != 0 {
		t.Fatalf("bench: exit %d, %s", code, stderr)
	}
	line := regexp.MustCompile(`(?m)^(PUT|GET) .* errors 0  server RSS peak (\d+\.\d) MB, at end (\d+\.\d) MB$`)
	m := line.FindAllStringSubmatch(out, -1)
	if len(m) != 2 {
		t.Fatalf("bench output has no RSS per phase: %q", out)
	}
	for _, l := range m {
		peak, _ := strconv.ParseFloat(l[2], 64)
		end, _ := strconv.ParseFloat(l[3], 64)
		if peak < 1 || end < 1 || end > peak {
			t.Fatalf("%s: RSS peak %v MB, end %v MB", l[1], peak, end)
		}
	}
	_, stderr, code = run(t, context.Background(), "bench", "kv", "-addr", srv.HTTPAddr(), "-server-pid", "999999999")
	if code != exitError || !strings.Contains(stderr, "server pid 999999999") {
		t.Fatalf("bench with a missing server pid: exit %d, %q", code, stderr)
	}
}

func TestBenchFanout(t *testing.T) {
	srv := servertest.Start(t)
	out, stderr, code := run(t, context.Background(), "bench", "fanout", "-addr", srv.HTTPAddr(),
		"-nodes", "20", "-size", "3000", "-rounds", "2", "-ack-jitter", "10ms", "-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("bench fanout: exit %d, %s", code, stderr)
	}
	line := regexp.MustCompile(`(?m)^round (\d): delivered 20/20  push \S+  first \S+  p50 \S+  p90 \S+  p99 \S+  max \S+$`)
	if m := line.FindAllStringSubmatch(out, -1); len(m) != 2 || m[0][1] != "1" || m[1][1] != "2" {
		t.Fatalf("bench fanout output %q", out)
	}
	if !regexp.MustCompile(`(?m)^all rounds: delivered 40/40  p50 \S+  p90 \S+  p99 \S+  max \S+$`).MatchString(out) {
		t.Fatalf("bench fanout output has no pooled line: %q", out)
	}
	if keys, _, err := srv.Client.KV().Keys("kvx/kvx-bench/", "", nil); err != nil || len(keys) != 0 {
		t.Fatalf("bench left keys behind: %v %v", keys, err)
	}
}

// Every tool with a main of its own is also a kvx subcommand built by the
// same function, and Main reports errors under the tool's own name.
func TestToolsAreKVXSubcommands(t *testing.T) {
	root := newKVXCmd()
	for name, build := range tools {
		if name == "kvx" {
			continue
		}
		sub, _, err := root.Find([]string{name})
		if err != nil || sub.Name() != name {
			t.Errorf("tool %s is not a kvx subcommand", name)
			continue
		}
		if got := build(); got.Name() != name || got.Short != sub.Short {
			t.Errorf("tool %s: its main builds %q (%q), kvx mounts %q (%q)", name, got.Name(), got.Short, sub.Name(), sub.Short)
		}
	}
	var out, errOut servertest.Buffer
	if code := Main(context.Background(), "kvx", []string{"frobnicate"}, strings.NewReader(""), &out, &errOut); code != exitUsage || !strings.HasPrefix(errOut.String(), "kvx: unknown command") {
		t.Fatalf("Main(kvx frobnicate) = %d, %q", code, errOut.String())
	}
}
