package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// Two kvx lock processes, each running a job three times, never run it at
// once (the job records an overlap when its mkdir finds the directory of
// the other), and both run it.
func TestLockProcessesNeverOverlap(t *testing.T) {
	srv := servertest.Start(t)
	bin := buildKVX(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	job := func(who string) string {
		return "mkdir " + dir + "/busy || echo OVERLAP >> " + log + "; echo " + who + " >> " + log +
			"; sleep 0.2; rmdir " + dir + "/busy"
	}
	var wg sync.WaitGroup
	for _, who := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				out, err := exec.Command(bin, "lock", "-http-addr", srv.HTTPAddr(), "-child-exit-code", "jobs/nightly", job(who)).CombinedOutput()
				if err != nil {
					t.Errorf("kvx lock (%s): %v\n%s", who, err, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := readFile(t, log)
	if strings.Contains(got, "OVERLAP") || strings.Count(got, "a\n") != 3 || strings.Count(got, "b\n") != 3 {
		t.Fatalf("job log:\n%s\nwant 3 runs each and no OVERLAP", got)
	}
	// Released and cleaned up: the lock key is gone, and so are the sessions.
	if p, _, _ := srv.Client.KV().Get("jobs/nightly/.lock", nil); p != nil {
		t.Fatalf("lock key after both exited: %+v", p)
	}
	if l, _, _ := srv.Client.Session().List(nil); len(l) != 0 {
		t.Fatalf("sessions left: %+v", l)
	}
}

func TestLockExitCodesAndUsage(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	_, _, code := run(t, ctx, "lock", "-http-addr", srv.HTTPAddr(), "-child-exit-code", "x", "exit 7")
	if code != 7 {
		t.Fatalf("-child-exit-code: exit %d, want the child's 7", code)
	}
	if _, _, code = run(t, ctx, "lock", "-http-addr", srv.HTTPAddr(), "x", "exit 7"); code != 0 {
		t.Fatalf("without -child-exit-code: exit %d, want 0", code)
	}
	// The command's own words are left alone (not made --name).
	out, _, code := run(t, ctx, "lock", "-http-addr", srv.HTTPAddr(), "-shell=false", "x", "echo", "$HOME", "-name", "-n")
	if code != 0 || strings.TrimSpace(out) != "$HOME -name -n" {
		t.Fatalf("-shell=false: %q exit %d", out, code)
	}
	out, _, _ = run(t, ctx, "lock", "-http-addr", srv.HTTPAddr(), "-n", "3", "sem", "echo held=$CONSUL_LOCK_HELD")
	if strings.TrimSpace(out) != "held=true" {
		t.Fatalf("semaphore child said %q", out)
	}
	for _, args := range [][]string{{"lock", "x"}, {"lock", "-n", "0", "x", "true"}, {"lock", "-timeout", "-1s", "x", "true"}} {
		if _, _, code := run(t, ctx, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	// -timeout gives up while another holds the lock.
	if _, err := srv.Client.KV().Put(&kvPair{Key: "held/.lock", Value: []byte("x"), Flags: 0x2ddccbc058a50c18}, nil); err != nil {
		t.Fatal(err)
	}
	sid, _, err := srv.Client.Session().Create(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := srv.Client.KV().Acquire(&kvPair{Key: "held/.lock", Session: sid, Flags: 0x2ddccbc058a50c18}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	_, stderr, code := run(t, ctx, "lock", "-http-addr", srv.HTTPAddr(), "-timeout", "300ms", "held", "echo ran")
	if code != exitError || !strings.Contains(stderr, "timeout") {
		t.Fatalf("-timeout on a held lock: exit %d, %q", code, stderr)
	}
}

// SIGKILL of the holding kvx lock: its job is stopped (SIGTERM on its
// parent's death), and the spare runs once the dead holder's session has
// expired (2 x its 15s TTL) and the 15s lock delay has passed.
func TestLockSpareTakesOverFromKilledHolder(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a session TTL: skipped under -short")
	}
	srv := servertest.Start(t)
	bin := buildKVX(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	start := func(job string) *exec.Cmd {
		c := exec.Command(bin, "lock", "-http-addr", srv.HTTPAddr(), "-verbose", "ha/job", job)
		c.Stderr = &servertest.Buffer{}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if c.ProcessState == nil {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
		})
		return c
	}
	holder := start("echo A $$ >> " + log + "; exec sleep 600")
	waitFor(t, "the holder's job", time.Minute, func() bool { return strings.Contains(readFile(t, log), "A ") })
	spare := start("echo B >> " + log)
	waitFor(t, "the spare to try", time.Minute, func() bool {
		return strings.Contains(spare.Stderr.(*servertest.Buffer).String(), "attempting lock acquisition")
	})
	if got := readFile(t, log); strings.Contains(got, "B") {
		t.Fatalf("the spare ran while the holder held the lock:\n%s", got)
	}
	pid, _ := strconv.Atoi(strings.Fields(strings.TrimPrefix(readFile(t, log), "A "))[0])
	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()
	waitFor(t, "the dead holder's job to stop", time.Minute, func() bool { return exited(pid) })
	waitFor(t, "the spare's job", 3*time.Minute, func() bool { return strings.Contains(readFile(t, log), "B") })
	if err := spare.Wait(); err != nil {
		t.Fatalf("spare: %v\n%s", err, spare.Stderr)
	}
}

// The coordination benchmarks run against an in-process server (small
// counts: the figures are the README's, measured by hand).
func TestBenchLockAndEvent(t *testing.T) {
	srv := servertest.Start(t)
	bin := buildKVX(t)
	out, err := exec.Command(bin, "bench", "lock", "-addr", srv.HTTPAddr(), "-handovers", "3", "-hold", "10ms").CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": 3 handovers") {
		t.Fatalf("bench lock: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "bench", "event", "-addr", srv.HTTPAddr(), "-watchers", "3", "-events", "2").CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": 6 handler starts") {
		t.Fatalf("bench event: %v\n%s", err, out)
	}
}

// A lost lock (its session destroyed) stops the child: SIGTERM, and kvx
// lock exits.
func TestLockLostStopsChild(t *testing.T) {
	srv := servertest.Start(t)
	bin := buildKVX(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	c := exec.Command(bin, "lock", "-http-addr", srv.HTTPAddr(), "-verbose", "lost/job",
		"trap 'echo TERM >> "+log+"; exit 0' TERM; echo started >> "+log+"; while true; do sleep 0.05; done")
	c.Stderr = &servertest.Buffer{}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.ProcessState == nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	waitFor(t, "the child", time.Minute, func() bool { return strings.Contains(readFile(t, log), "started") })
	p, _, err := srv.Client.KV().Get("lost/job/.lock", nil)
	if err != nil || p == nil || p.Session == "" {
		t.Fatalf("lock key = %+v, %v", p, err)
	}
	if _, err := srv.Client.Session().Destroy(p.Session, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("kvx lock still running after its lock was lost:\n%s", c.Stderr)
	}
	if got := readFile(t, log); !strings.Contains(got, "TERM") {
		t.Fatalf("the child did not get SIGTERM: %q\n%s", got, c.Stderr)
	}
	if !strings.Contains(c.Stderr.(*servertest.Buffer).String(), "lock lost") {
		t.Fatalf("stderr: %s", c.Stderr)
	}
}
