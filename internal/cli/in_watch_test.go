package cli

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// replace writes content to path the way render and editors do: a temp
// file beside it, renamed over it.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestInWatchPushesEachChange: kvx in -watch pushes the file at the start
// and each version after, whether renamed over the file or written in
// place; a refused version (too few lines, the stop switch) is logged and
// not pushed, and the next good one is; an unchanged file is not pushed
// again; cancelling ends it with exit 0.
func TestInWatchPushesEachChange(t *testing.T) {
	srv := servertest.Start(t)
	t.Setenv("KVX_NODE", "test-node")
	dir := t.TempDir()
	path := writeFile(t, dir, "app.conf", hostsFile(5, "v1"))
	kv := srv.Client.KV()
	sumKey := "kvx/w/app/checksum"
	inKV := func(content string) func() bool {
		return func() bool {
			p, _, err := kv.Get(sumKey, nil)
			return err == nil && p != nil && string(p.Value) == checksum.OfString(content)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr servertest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- execute(ctx, []string{"in", "-k", "w/app", "-f", path, "-l", "3", "-watch", "-wait", "10ms",
			"-log-level", "debug", "-http-addr", srv.HTTPAddr()}, strings.NewReader(""), &stdout, &stderr)
	}()
	logged := func(what string, n int) {
		t.Helper()
		servertest.Eventually(t, what, func() bool { return strings.Count(stderr.String(), what) >= n })
	}

	servertest.Eventually(t, "the file at the start", inKV(hostsFile(5, "v1")))
	replace(t, path, hostsFile(5, "v2"))
	servertest.Eventually(t, "v2, renamed over the file", inKV(hostsFile(5, "v2")))

	// Too few lines: refused, logged, not pushed; the watch goes on.
	replace(t, path, "one line\n")
	logged("fewer than the minimum of 3", 1)
	if !inKV(hostsFile(5, "v2"))() {
		t.Fatal("a refused version replaced v2 in KV")
	}
	replace(t, path, hostsFile(5, "v3"))
	servertest.Eventually(t, "v3 after a refusal", inKV(hostsFile(5, "v3")))

	// Written in place rather than renamed.
	if err := os.WriteFile(path, []byte(hostsFile(5, "v4")), 0o644); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "v4, written in place", inKV(hostsFile(5, "v4")))

	// The same content again: looked at, not pushed.
	before, _, err := kv.Get(sumKey, nil)
	if err != nil || before == nil {
		t.Fatalf("read %s: %v", sumKey, err)
	}
	n := strings.Count(stderr.String(), "msg=unchanged")
	replace(t, path, hostsFile(5, "v4"))
	logged("msg=unchanged", n+1)
	if after, _, _ := kv.Get(sumKey, nil); after == nil || after.ModifyIndex != before.ModifyIndex {
		t.Fatal("an unchanged file was pushed again")
	}

	// The stop switch refuses, as for a one-shot in; once lifted, the next
	// change goes through.
	kvxOK(t, srv, "stop", "-k", "w/app", "-r", "CHG-7 freeze")
	replace(t, path, hostsFile(5, "v5"))
	logged("CHG-7 freeze", 1)
	if !inKV(hostsFile(5, "v4"))() {
		t.Fatal("a push went through the stop switch")
	}
	kvxOK(t, srv, "start", "-k", "w/app")
	replace(t, path, hostsFile(5, "v6"))
	servertest.Eventually(t, "v6 after the stop switch is lifted", inKV(hostsFile(5, "v6")))

	cancel()
	err = <-done
	if code := exitCode(err, &stderr); code != exitOK {
		t.Fatalf("cancelled in -watch: exit %d (%v)\nstderr: %s", code, err, stderr.String())
	}
	// Every outcome went to the log; stdout carries no one-shot result lines.
	if stdout.String() != "" {
		t.Errorf("in -watch wrote to stdout: %q", stdout.String())
	}
}

// TestInWatchUsage: -watch needs a file to follow, and its -wait needs it.
func TestInWatchUsage(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	src := writeFile(t, dir, "src", hostsFile(3, "u"))
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"in", "-k", "u/a", "-watch", "-f", "-"}, "-watch needs -f FILE"},
		{[]string{"in", "-k", "u/a", "-watch", "-u", "http://127.0.0.1:1/x"}, "-watch needs -f FILE"},
		{[]string{"in", "-k", "u/a", "-watch"}, "-watch needs -f FILE"},
		{[]string{"in", "-k", "u/a", "-f", src, "-wait", "1s"}, "-wait needs -watch"},
		{[]string{"in", "-k", "u/a", "-f", src, "-watch", "-wait", "-1s"}, "want a duration"},
		{[]string{"in", "-k", "u/a", "-f", src, "-watch", "-wait-delivered", "1m"}, "-watch does not take -wait-delivered"},
	} {
		out, errOut, code := kvx(t, srv, "", tc.args...)
		expect(t, strings.Join(tc.args, " "), code, exitUsage, out, errOut, tc.msg)
	}
	if keys, _, _ := srv.Client.KV().Keys("kvx/u/", "", nil); len(keys) != 0 {
		t.Fatalf("usage errors wrote %v", keys)
	}
}
