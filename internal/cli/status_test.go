package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/servertest"
	"github.com/kvxproject/kvx/pkg/transport"
)

// kvxAs runs a command against srv as node.
func kvxAs(ctx context.Context, srv *servertest.Server, node string, args ...string) (string, string, int) {
	var out, errOut servertest.Buffer
	args = append(args, "-http-addr", srv.HTTPAddr(), "-node", node)
	err := execute(ctx, args, strings.NewReader(""), &out, &errOut)
	code := exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// fleet runs kvx out --watch as each node until the test ends, and
// returns their target files.
func fleet(t *testing.T, srv *servertest.Server, key string, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	paths := map[string]string{}
	for _, name := range names {
		path := filepath.Join(dir, name)
		paths[name] = path
		wg.Add(1)
		go func() {
			defer wg.Done()
			kvxAs(ctx, srv, name, "out", "-k", key, "-f", path, "--watch", "-ack-jitter", "10ms", "-log-level", "error")
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return paths
}

// A typo must not look like success: a key without a checksum exits 1, in
// text and in JSON.
func TestStatusMissingKey(t *testing.T) {
	srv := servertest.Start(t)
	out, errOut, code := kvx(t, srv, "", "status", "-k", "app/hots")
	expect(t, "status of a missing key", code, exitError, out, errOut, "kvx/app/hots", "no such key")
	out, errOut, code = kvx(t, srv, "", "status", "-k", "app/hots", "-json")
	expect(t, "status -json of a missing key", code, exitError, out, errOut, "no such key")
	var st transport.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Checksum != "" || st.Key != "app/hots" {
		t.Fatalf("status -json of a missing key printed %q (%v)", out, err)
	}
	out, errOut, code = kvx(t, srv, "", "status", "-k", "app/hots", "-wait", "1m")
	expect(t, "status -wait of a missing key", code, exitError, out, errOut, "no such key")
}

func TestWaitUsage(t *testing.T) {
	srv := servertest.Start(t)
	src := writeFile(t, t.TempDir(), "f", "a\n")
	for _, args := range [][]string{
		{"status", "-k", "k", "-want", "2"},
		{"status", "-k", "k", "-wait", "1m", "-want", "0"},
		{"status", "-k", "k", "-wait", "1m", "-want", "most"},
		{"status", "-k", "k", "-wait", "-1s"},
		{"in", "-k", "k", "-f", src, "-want", "3"},
	} {
		out, errOut, code := kvx(t, srv, "", args...)
		expect(t, strings.Join(args, " "), code, exitUsage, out, errOut, "want")
	}
	if keys, _, _ := srv.Client.KV().Keys("kvx/k/", "", nil); len(keys) != 0 {
		t.Fatalf("a usage error pushed: %v", keys)
	}
}

// kvx in -wait-delivered proves a push reached the fleet (running kvx out
// --watch), status -wait does the same for what is in KV, and a frozen
// node makes both exit 1 naming it, with why and how long it has been
// behind.
func TestWaitDelivered(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	names := []string{"n1", "n2", "n3"}
	paths := fleet(t, srv, "app/hosts", names...)
	v1 := hostsFile(20, "v1")
	src := writeFile(t, dir, "hosts", v1)
	// A first version: nothing acknowledges the key yet, so say how many.
	out, errOut, code := kvx(t, srv, "", "in", "-k", "app/hosts", "-f", src, "-wait-delivered", "1m", "-want", "3")
	expect(t, "in -wait-delivered -want 3", code, 0, out, errOut, "uploaded kvx/app/hosts", "reached: 3/3 nodes have "+checksum.OfString(v1)+" (want 3)")
	for name, p := range paths {
		if b, _ := os.ReadFile(p); string(b) != v1 {
			t.Fatalf("%s lacks v1 after the wait: %q", name, b)
		}
	}
	v2 := hostsFile(20, "v2")
	writeFile(t, dir, "hosts", v2)
	out, errOut, code = kvx(t, srv, "", "in", "-k", "app/hosts", "-f", src, "-wait-delivered", "1m")
	expect(t, "in -wait-delivered (all)", code, 0, out, errOut, "reached: 3/3 nodes have "+checksum.OfString(v2)+" (want all)")
	for name, p := range paths {
		if b, _ := os.ReadFile(p); string(b) != v2 {
			t.Fatalf("%s lacks v2 after the wait: %q", name, b)
		}
	}
	// Pushing the same again still proves delivery.
	out, errOut, code = kvx(t, srv, "", "in", "-k", "app/hosts", "-f", src, "-wait-delivered", "1m")
	expect(t, "unchanged in -wait-delivered", code, 0, out, errOut, "unchanged kvx/app/hosts", "reached: 3/3")
	out, errOut, code = kvx(t, srv, "", "status", "-k", "app/hosts", "-wait", "1m", "-want", "2", "-json")
	var res struct {
		transport.Status
		Want    string `json:"want"`
		Reached bool   `json:"reached"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.Reached || res.Want != "2" || res.Current != 3 || res.PushedBy != "test-node" {
		t.Fatalf("status -wait -json: exit %d, %v, %q\n%s", code, err, out, errOut)
	}

	// n3 freezes its file: the next push cannot reach all.
	out, errOut, code = kvxAs(context.Background(), srv, "n3", "freeze", "-f", paths["n3"], "-r", "CHG-7 disk swap")
	expect(t, "freeze", code, 0, out, errOut)
	writeFile(t, dir, "hosts", hostsFile(20, "v3"))
	out, errOut, code = kvx(t, srv, "", "in", "-k", "app/hosts", "-f", src, "-wait-delivered", "2s")
	expect(t, "in -wait-delivered, a node frozen", code, exitError, out, errOut,
		"pushed, but not delivered", "want all", "n3 (frozen)", "frozen    n3 "+paths["n3"]+": CHG-7 disk swap")
	if !strings.Contains(out, "NODE  RESULT") || !strings.Contains(lineOf(out, "n3 "), "frozen: CHG-7 disk swap") {
		t.Fatalf("laggards not listed with why:\n%s", out)
	}
	out, errOut, code = kvx(t, srv, "", "status", "-k", "app/hosts", "-wait", "500ms")
	expect(t, "status -wait, a node frozen", code, exitError, out, errOut, "timed out", "1 behind: n3 (frozen)")
	// -want 2 is reachable without n3.
	out, errOut, code = kvx(t, srv, "", "status", "-k", "app/hosts", "-wait", "1m", "-want", "2")
	expect(t, "status -wait -want 2", code, 0, out, errOut, "reached: 2/3 nodes", "(want 2)")
	// Plain status: who pushed, the freeze, and the laggard's row.
	out, errOut, code = kvx(t, srv, "", "status", "-k", "app/hosts")
	expect(t, "status", code, 0, out, errOut, "pushed    ", " by test-node, ", "delivered 2/3 nodes", "BEHIND")
	if row := strings.Fields(lineOf(out, "n3 ")); len(row) < 6 || row[3] == "-" || !strings.Contains(lineOf(out, "n3 "), "frozen: CHG-7 disk swap") {
		t.Fatalf("n3's row: %q\n%s", row, out)
	}
}

// lineOf is the first line of out starting with prefix.
func lineOf(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// SIGINT or SIGTERM (a cancelled context) ends a wait promptly, exit 1,
// with what was seen so far.
func TestStatusWaitCancelled(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	src := writeFile(t, dir, "hosts", hostsFile(5, "v1"))
	kvxOK(t, srv, "in", "-k", "k", "-f", src)
	out, errOut, code := kvxAs(context.Background(), srv, "n1", "out", "-k", "k", "-f", filepath.Join(dir, "n1"))
	expect(t, "out", code, 0, out, errOut)
	writeFile(t, dir, "hosts", hostsFile(5, "v2"))
	kvxOK(t, srv, "in", "-k", "k", "-f", src)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr servertest.Buffer
	done := make(chan int, 1)
	go func() {
		err := execute(ctx, []string{"status", "-k", "k", "-wait", "1h", "-http-addr", srv.HTTPAddr()}, strings.NewReader(""), &stdout, &stderr)
		done <- exitCode(err, &stderr)
	}()
	servertest.Eventually(t, "a progress line", func() bool { return strings.Contains(stdout.String(), "delivered 0/1 nodes, want all; 1 behind: n1") })
	cancel()
	select {
	case code := <-done:
		if code != exitError || !strings.Contains(stderr.String(), "context canceled") || !strings.Contains(stdout.String(), "NODE  RESULT") {
			t.Fatalf("cancelled wait: exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
		}
	case <-time.After(30 * time.Second): // a hang guard: the blocking query lasts minutes
		t.Fatal("a cancelled wait did not return")
	}
}
