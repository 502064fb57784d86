package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// End to end with real processes: one `kvx server -dev`, 20 `kvx out
// --watch` processes, one `kvx in`. Every target file must end up identical
// to the source, and `kvx status` must show 20/20.
func TestOutWatchProcessesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs 22 processes")
	}
	bin := buildKVX(t)
	srv := startProc(t, bin, "-dev", "-node", "e2e", "-raft-addr", "127.0.0.1:0")
	servertest.Eventually(t, "a leader", func() bool { l, err := srv.c.Status().Leader(); return err == nil && l != "" })
	dir := t.TempDir()
	const nodes = 20
	targets := make([]string, nodes)
	outs := make([]*exec.Cmd, nodes)
	logs := make([]*servertest.Buffer, nodes)
	for i := range nodes {
		targets[i] = filepath.Join(dir, fmt.Sprintf("node-%02d", i), "etc", "hosts")
		logs[i] = &servertest.Buffer{}
		cmd := exec.Command(bin, "out", "--watch", "-k", "e2e/hosts", "-f", targets[i], "-l", "10",
			"-node", fmt.Sprintf("node-%02d", i), "-http-addr", srv.http, "--ack-jitter", "50ms",
			"-e", "echo reloaded >> "+targets[i]+".log")
		cmd.Stderr = logs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outs[i] = cmd
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
	}
	push := func(content string) {
		t.Helper()
		src := filepath.Join(dir, "source")
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "in", "-k", "e2e/hosts", "-f", src, "-http-addr", srv.http, "-node", "pusher").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "uploaded") {
			t.Fatalf("kvx in: %v\n%s", err, out)
		}
		servertest.Eventually(t, "every node's file", func() bool {
			for _, p := range targets {
				if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, []byte(content)) {
					return false
				}
			}
			return true
		})
		servertest.Eventually(t, "kvx status 20/20", func() bool {
			out, err := exec.Command(bin, "status", "-k", "e2e/hosts", "-http-addr", srv.http).Output()
			return err == nil && strings.Contains(string(out), "delivered 20/20 nodes")
		})
	}
	push(hostsFile(100, "v1"))
	push(hostsFile(100, "v2"))
	for i, p := range targets {
		if b, _ := os.ReadFile(p + ".log"); string(b) != "reloaded\nreloaded\n" {
			t.Errorf("node %d ran its command %q, want twice", i, b)
		}
	}
	for i, cmd := range outs {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("kvx out --watch %d exited with %v on SIGTERM:\n%s", i, err, logs[i].String())
		}
	}
}
