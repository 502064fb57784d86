package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/servertest"
	"github.com/kvxproject/kvx/pkg/transport"
)

// kvx runs a command against srv, as node "test-node" (through KVX_NODE:
// not every command takes -node), with stdin.
func kvx(t *testing.T, srv *servertest.Server, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut servertest.Buffer
	t.Setenv("KVX_NODE", "test-node")
	args = append(args, "-http-addr", srv.HTTPAddr())
	err := execute(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	code := exitCode(err, &errOut) // writes the error to errOut
	return out.String(), errOut.String(), code
}

func hostsFile(n int, tag string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "10.1.0.%d host-%d.%s\n", i, i, tag)
	}
	return b.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func expect(t *testing.T, what string, code, want int, stdout, stderr string, contains ...string) {
	t.Helper()
	if code != want {
		t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, code, want, stdout, stderr)
	}
	for _, c := range contains {
		if !strings.Contains(stdout+stderr, c) {
			t.Fatalf("%s: output lacks %q\nstdout: %s\nstderr: %s", what, c, stdout, stderr)
		}
	}
}

func TestInOutRoundTrip(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	content := hostsFile(30, "v1")
	src := writeFile(t, dir, "hosts", content)
	target := filepath.Join(dir, "out", "hosts")
	ran := filepath.Join(dir, "ran")

	out, errOut, code := kvx(t, srv, "", "in", "-k", "app/hosts", "-f", src, "-l", "10", "-z", "zstd")
	expect(t, "in", code, 0, out, errOut, "uploaded kvx/app/hosts: "+checksum.OfString(content))
	out, errOut, code = kvx(t, srv, "", "in", "-k", "app/hosts", "-f", src)
	expect(t, "in again", code, 0, out, errOut, "unchanged kvx/app/hosts", "(stored zstd, kept")
	out, errOut, code = kvx(t, srv, "", "in", "-k", "app/hosts", "-f", src, "-z", "gzip")
	expect(t, "in again with another -z", code, 0, out, errOut, "re-encoded kvx/app/hosts: same content", "stored gzip instead of zstd")
	out, errOut, code = kvx(t, srv, "", "in", "-k", "app/hosts", "-f", src, "-z", "gzip")
	expect(t, "in again with that -z", code, 0, out, errOut, "unchanged kvx/app/hosts")

	// A consul watch handler gets JSON on stdin: it is ignored, KV is read afresh.
	watchJSON := `{"Key":"kvx/app/hosts/checksum","Value":"c3RhbGU=","Flags":0}`
	args := []string{"out", "-k", "app/hosts", "-f", target, "-l", "10", "-c", "0640", "-e", "echo reload >> " + ran + " && echo done"}
	out, errOut, code = kvx(t, srv, watchJSON, args...)
	expect(t, "out", code, 0, out, errOut, "delivered app/hosts")
	if b, _ := os.ReadFile(target); string(b) != content {
		t.Fatalf("target = %q", b)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	out, errOut, code = kvx(t, srv, "", args...)
	expect(t, "out again", code, 0, out, errOut, "unchanged app/hosts")
	if b, _ := os.ReadFile(ran); string(b) != "reload\n" {
		t.Fatalf("command ran %q, want once", b)
	}
	out, errOut, code = kvx(t, srv, "", "status", "-k", "app/hosts")
	expect(t, "status", code, 0, out, errOut, "delivered 1/1 nodes", checksum.OfString(content))
	out, _, code = kvx(t, srv, "", "status", "-k", "app/hosts", "--json")
	var st transport.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.Current != 1 || st.Nodes != 1 {
		t.Fatalf("status --json: %v %+v %q", err, st, out)
	}

	// Stdin as the source.
	v2 := hostsFile(30, "v2")
	out, errOut, code = kvx(t, srv, v2, "in", "-k", "app/hosts", "-f", "-")
	expect(t, "in from stdin", code, 0, out, errOut, "uploaded")
	out, errOut, code = kvx(t, srv, "", args...)
	expect(t, "out v2", code, 0, out, errOut, "delivered")
	if b, _ := os.ReadFile(target); string(b) != v2 {
		t.Fatal("v2 not delivered")
	}
}

func TestInOutRefusals(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	src := writeFile(t, dir, "hosts", hostsFile(30, "v1"))
	short := writeFile(t, dir, "short", "one line\n")
	target := writeFile(t, dir, "target", "precious\n")
	unchanged := func() {
		t.Helper()
		if b, _ := os.ReadFile(target); string(b) != "precious\n" {
			t.Fatalf("target changed: %q", b)
		}
	}
	out, errOut, code := kvx(t, srv, "", "in", "-k", "r/hosts", "-f", short, "-l", "5")
	expect(t, "short in", code, exitRefused, out, errOut, "fewer than the minimum of 5")
	out, errOut, code = kvx(t, srv, "", "in", "-k", "r/hosts", "-f", src, "--max-size", "100")
	expect(t, "large in", code, exitRefused, out, errOut, "more than the cap of 100")
	out, errOut, code = kvx(t, srv, "", "out", "-k", "r/hosts", "-f", target)
	expect(t, "out missing", code, exitRefused, out, errOut, "missing")
	unchanged()

	kvxOK(t, srv, "in", "-k", "r/hosts", "-f", src)
	out, errOut, code = kvx(t, srv, "", "out", "-k", "r/hosts", "-f", target, "-l", "50")
	expect(t, "out short", code, exitRefused, out, errOut, "fewer than the minimum of 50")
	unchanged()

	out, errOut, code = kvx(t, srv, "", "stop", "-k", "r/hosts", "-r", "CHG-42 rollback")
	expect(t, "stop", code, 0, out, errOut, "stopped")
	out, errOut, code = kvx(t, srv, "", "in", "-k", "r/hosts", "-f", short)
	expect(t, "in while stopped", code, exitRefused, out, errOut, "CHG-42 rollback")
	out, errOut, code = kvx(t, srv, "", "out", "-k", "r/hosts", "-f", target)
	expect(t, "out while stopped", code, exitRefused, out, errOut, "CHG-42 rollback")
	unchanged()
	out, errOut, code = kvx(t, srv, "", "freeze", "-f", target, "-r", "debugging")
	expect(t, "freeze", code, 0, out, errOut, "froze")
	out, errOut, code = kvx(t, srv, "", "out", "-k", "r/hosts", "-f", target, "--ignore-stop")
	expect(t, "out frozen", code, exitRefused, out, errOut, "frozen on test-node (debugging)")
	unchanged()
	kvxOK(t, srv, "unfreeze", "-f", target)
	kvxOK(t, srv, "out", "-k", "r/hosts", "-f", target, "--ignore-stop")
	kvxOK(t, srv, "start", "-k", "r/hosts")

	// A corrupted checksum is refused; the file keeps what it had.
	srv.Client.KV().Put(&kvPair{Key: "kvx/r/hosts/checksum", Value: []byte(checksum.OfString("else"))}, nil)
	before, _ := os.ReadFile(target)
	out, errOut, code = kvx(t, srv, "", "out", "-k", "r/hosts", "-f", filepath.Join(dir, "fresh"))
	expect(t, "mismatch", code, exitRefused, out, errOut, "mismatch")
	if _, err := os.Stat(filepath.Join(dir, "fresh")); err == nil {
		t.Fatal("a mismatched file was written")
	}
	if after, _ := os.ReadFile(target); string(after) != string(before) {
		t.Fatal("target changed")
	}
}

// kvxOK runs a command that must succeed.
func kvxOK(t *testing.T, srv *servertest.Server, args ...string) {
	t.Helper()
	out, errOut, code := kvx(t, srv, "", args...)
	expect(t, strings.Join(args, " "), code, 0, out, errOut)
}

type kvPair = consulapi.KVPair

func TestOutCommandFailsAndUsage(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	src := writeFile(t, dir, "hosts", hostsFile(30, "v1"))
	kvxOK(t, srv, "in", "-k", "c/hosts", "-f", src)
	out, errOut, code := kvx(t, srv, "", "out", "-k", "c/hosts", "-f", filepath.Join(dir, "t"), "-e", "echo boom >&2; exit 7")
	expect(t, "failing command", code, exitError, out, errOut, "exit status 7", "boom")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"out", "-k", "c/hosts"}, "--file is required"},
		{[]string{"out", "-f", "x"}, "--key is required"},
		{[]string{"out", "-k", "c/hosts", "-f", "x", "-c", "644x"}, "octal mode"},
		{[]string{"out", "-k", "c/hosts", "-f", "x", "-o", "no-such-user-kvx"}, "no-such-user-kvx"},
		{[]string{"in", "-k", "c/hosts"}, "exactly one of -f"},
		{[]string{"in", "-k", "c/hosts", "-f", src, "-z", "lzma"}, "compression \"lzma\""},
		{[]string{"stop", "-k", "c/hosts"}, "--reason is required"},
	} {
		out, errOut, code := kvx(t, srv, "", tc.args...)
		expect(t, strings.Join(tc.args, " "), code, exitUsage, out, errOut, tc.msg)
	}
	out, errOut, code = kvx(t, srv, "", "in", "-k", "c/hosts", "-f", filepath.Join(dir, "nope"))
	expect(t, "missing source", code, exitError, out, errOut, "no such file")
}

func TestInFromURL(t *testing.T) {
	srv := servertest.Start(t)
	content := hostsFile(30, "url")
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hosts":
			fmt.Fprint(w, content)
		case "/slow": // never answers: holds until the client gives up
			<-r.Context().Done()
		default:
			http.Error(w, "upstream broke", http.StatusInternalServerError)
		}
	}))
	defer web.Close()
	out, errOut, code := kvx(t, srv, "", "in", "-k", "u/hosts", "-u", web.URL+"/hosts")
	expect(t, "url", code, 0, out, errOut, "uploaded kvx/u/hosts: "+checksum.OfString(content))
	out, errOut, code = kvx(t, srv, "", "in", "-k", "u/other", "-u", web.URL+"/broken")
	expect(t, "url 500", code, exitError, out, errOut, "500 Internal Server Error", "nothing uploaded")
	out, errOut, code = kvx(t, srv, "", "in", "-k", "u/other", "-u", web.URL+"/slow", "--url-timeout", "100ms")
	expect(t, "url timeout", code, exitError, out, errOut, "deadline exceeded")
	out, errOut, code = kvx(t, srv, "", "in", "-k", "u/other", "-u", web.URL+"/hosts", "--max-size", "50")
	expect(t, "url too large", code, exitRefused, out, errOut, "cap of 50")
	if keys, _, _ := srv.Client.KV().Keys("kvx/u/other", "", nil); len(keys) != 0 {
		t.Fatalf("failed URL pushes wrote %v", keys)
	}
}

func TestCopyRawAndEnvironment(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	content := hostsFile(30, "cp")
	src := writeFile(t, dir, "hosts", content)
	kvxOK(t, srv, "in", "-k", "a/hosts", "-f", src, "-z", "gzip")
	out, errOut, code := kvx(t, srv, "", "copy", "--from", "a/hosts", "--to", "b/hosts", "-z", "brotli")
	expect(t, "copy", code, 0, out, errOut, "copied a/hosts to b/hosts")
	target := filepath.Join(dir, "b")
	kvxOK(t, srv, "out", "-k", "b/hosts", "-f", target)
	if b, _ := os.ReadFile(target); string(b) != content {
		t.Fatal("copy delivered different content")
	}
	srv.Client.KV().Put(&kvPair{Key: "plain/motd", Value: []byte("hello\nworld\n")}, nil)
	raw := filepath.Join(dir, "motd")
	out, errOut, code = kvx(t, srv, "", "raw", "-k", "plain/motd", "-f", raw, "-e", "echo ran", "-log-level", "debug")
	expect(t, "raw", code, 0, out, errOut, "delivered plain/motd", "output=ran")
	out, errOut, code = kvx(t, srv, "", "raw", "-k", "plain/motd", "-f", raw, "-e", "echo ran", "-log-level", "debug")
	expect(t, "raw again", code, 0, out, errOut, "unchanged plain/motd")
	if strings.Contains(errOut, "output=ran") {
		t.Fatal("raw re-ran its command on unchanged content")
	}

	// CONSUL_HTTP_ADDR is honoured when -http-addr is not given.
	t.Setenv("CONSUL_HTTP_ADDR", srv.HTTPAddr())
	var o, e servertest.Buffer
	err := execute(context.Background(), []string{"status", "-k", "b/hosts"}, strings.NewReader(""), &o, &e)
	if err != nil || !strings.Contains(o.String(), "delivered 1/1") {
		t.Fatalf("status via CONSUL_HTTP_ADDR: %v %s %s", err, o.String(), e.String())
	}
}

func TestMetricsAndEvent(t *testing.T) {
	srv := servertest.Start(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dir := t.TempDir()
	v1 := hostsFile(30, "m")
	src := writeFile(t, dir, "hosts", v1)
	kvxOK(t, srv, "in", "-k", "m/hosts", "-f", src)
	writeFile(t, dir, "hosts", strings.Replace(v1, "host-7.m", "host-7.changed", 1))
	out, errOut, code := kvx(t, srv, "", "in", "-k", "m/hosts", "-f", src, "-dogstatsd-addr", pc.LocalAddr().String())
	expect(t, "in with metrics", code, 0, out, errOut, "uploaded")
	var got strings.Builder
	buf := make([]byte, 64<<10)
	for !strings.Contains(got.String(), "kvx.in:") || !strings.Contains(got.String(), "_e{") {
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read statsd: %v (so far %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	for _, want := range []string{"kvx.in:1|c|#", "key:m/hosts", "direction:in", "result:uploaded", "host:test-node", "Updated: m/hosts", `-10.1.0.7 host-7.m\n+10.1.0.7 host-7.changed`} {
		if !strings.Contains(got.String(), want) {
			t.Errorf("statsd traffic lacks %q:\n%s", want, got.String())
		}
	}
	if strings.Contains(got.String(), "host-20.m") {
		t.Error("the event carries more of the file than the diff's context")
	}
}
