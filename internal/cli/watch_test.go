package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// kvx event reaches a long-running kvx watch -type event's handler exactly
// once, and a restarted watch (same -state-file) does not run it again.
func TestEventReachesWatchHandlerOnce(t *testing.T) {
	srv := servertest.Start(t)
	bin := buildKVX(t)
	dir := t.TempDir()
	log, state := filepath.Join(dir, "log"), filepath.Join(dir, "state.json")
	// The handler appends each event it is given (the JSON array on its
	// stdin) as one line, with CONSUL_INDEX.
	handler := `echo "$CONSUL_INDEX $(cat)" >> ` + log
	w := exec.Command(bin, "watch", "-http-addr", srv.HTTPAddr(), "-type", "event", "-name", "deploy", "-state-file", state, handler)
	w.Stderr = &servertest.Buffer{}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w.ProcessState == nil {
			_ = w.Process.Kill()
			_ = w.Wait()
		}
	})
	out, err := exec.Command(bin, "event", "-http-addr", srv.HTTPAddr(), "-name", "deploy", "v42").CombinedOutput()
	if err != nil {
		t.Fatalf("kvx event: %v\n%s", err, out)
	}
	id := strings.TrimSpace(strings.TrimPrefix(string(out), "Event ID: "))
	waitFor(t, "the handler to get the event, recorded", time.Minute, func() bool {
		st, _ := os.ReadFile(state)
		return strings.Contains(readFile(t, log), id) && strings.Contains(string(st), id)
	})
	if err := w.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(); err != nil {
		t.Fatalf("watch after SIGTERM: %v\n%s", err, w.Stderr)
	}
	// Restarted with -once: the event was handled, so nothing runs.
	if out, err := exec.Command(bin, "watch", "-http-addr", srv.HTTPAddr(), "-type", "event", "-name", "deploy",
		"-state-file", state, "-once", handler).CombinedOutput(); err != nil {
		t.Fatalf("restarted watch: %v\n%s", err, out)
	}
	got := readFile(t, log)
	if strings.Count(got, id) != 1 || strings.Count(got, "\n") != 1 || !strings.Contains(got, `"Payload":"djQy"`) {
		t.Fatalf("handler log:\n%s\nwant the event once", got)
	}
}

func TestWatchKeyRestartAndRetry(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	log, state, flag := filepath.Join(dir, "log"), filepath.Join(dir, "state.json"), filepath.Join(dir, "failed-once")
	mustPutKV(t, srv, "cfg/a", "1")
	// The handler fails the first time (and leaves a mark), then succeeds.
	handler := "test -e " + flag + " || { touch " + flag + "; exit 1; }; cat >> " + log
	args := []string{"watch", "-http-addr", srv.HTTPAddr(), "-type", "key", "-key", "cfg/a", "-state-file", state}
	ctxT, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		_, _, code := run(t, ctxT, append(args, handler)...)
		done <- code
	}()
	// Stopped only once the success is recorded: the log is written while
	// the handler still runs, and a stop then kills it, a failure.
	waitFor(t, "the retried handler to succeed and be recorded", time.Minute, func() bool {
		st, _ := os.ReadFile(state)
		return strings.Contains(readFile(t, log), `"Key":"cfg/a"`) && regexp.MustCompile(`"Hash": "[0-9a-f]{64}"`).Match(st)
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch stopped with %d", code)
	}
	// Restarted with the key unchanged: the handler does not run again.
	if _, stderr, code := run(t, ctx, append(args, "-once", handler)...); code != 0 {
		t.Fatalf("restarted watch: exit %d\n%s", code, stderr)
	}
	if n := strings.Count(readFile(t, log), "\n"); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
	// -once exits with the handler's failure; without a handler, the result is printed.
	mustPutKV(t, srv, "cfg/a", "2")
	if _, _, code := run(t, ctx, append(args, "-once", "exit 3")...); code != 3 {
		t.Fatalf("-once with a failing handler: exit %d", code)
	}
	out, _, code := run(t, ctx, "watch", "-http-addr", srv.HTTPAddr(), "-type", "keyprefix", "-prefix", "cfg/")
	if code != 0 || !strings.Contains(out, `    "Key": "cfg/a"`) {
		t.Fatalf("watch without a handler: exit %d, %q", code, out)
	}
	for _, bad := range [][]string{{"watch"}, {"watch", "-type", "nope"}, {"watch", "-type", "key"}, {"watch", "-type", "key", "-key", "a", "-name", "x"}} {
		if _, _, code := run(t, ctx, bad...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, exitUsage)
		}
	}
}

func mustPutKV(t *testing.T, srv *servertest.Server, k, v string) {
	t.Helper()
	if _, err := srv.Client.KV().Put(&kvPair{Key: k, Value: []byte(v)}, nil); err != nil {
		t.Fatal(err)
	}
}
