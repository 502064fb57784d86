package cli

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// stopProc sends SIGTERM and wants a clean exit.
func stopProc(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("server exit after SIGTERM: %v\n%s", err, p.log.String())
	}
}

// A real `kvx server` process restarted with nothing but -data-dir comes
// back as the same node, in the same datacenter, on the same addresses, with
// its data; one started on that data dir with another node name, datacenter
// or Raft address is refused (exit 2) and leaves the data dir alone.
func TestServerProcessRestartsFromDataDirAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end with real processes: skipped under -short")
	}
	bin := buildKVX(t)
	dir := t.TempDir()
	raftAddr, httpAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
	check := func(p *proc, wantHTTP string) {
		t.Helper()
		if p.http != wantHTTP {
			t.Fatalf("serving HTTP on %s, want %s\n%s", p.http, wantHTTP, p.log.String())
		}
		servertest.Eventually(t, "a leader", func() bool { l, err := p.c.Status().Leader(); return err == nil && l == raftAddr })
		self, err := p.c.Agent().Self()
		if err != nil || self["Config"]["NodeName"] != "n7" || self["Config"]["Datacenter"] != "dc7" {
			t.Fatalf("agent self = %v, %v; want node n7 in dc7", self["Config"], err)
		}
		pair, _, err := p.c.KV().Get("e2e/who", &consulapi.QueryOptions{RequireConsistent: true})
		if err != nil || pair == nil || string(pair.Value) != "n7" {
			t.Fatalf("e2e/who = %+v, %v", pair, err)
		}
	}

	quiet := func(p *proc) {
		t.Helper()
		if log := p.log.String(); strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR") {
			t.Fatalf("a single node's start and SIGTERM logged a warning or an error:\n%s", log)
		}
	}
	p := startExactProc(t, bin, "server", "-data-dir", dir, "-node", "n7", "-datacenter", "dc7",
		"-raft-addr", raftAddr, "-http-addr", httpAddr, "-raft-timeout", "300ms")
	servertest.Eventually(t, "a leader", func() bool { l, err := p.c.Status().Leader(); return err == nil && l != "" })
	if _, err := p.c.KV().Put(&consulapi.KVPair{Key: "e2e/who", Value: []byte("n7")}, nil); err != nil {
		t.Fatal(err)
	}
	check(p, httpAddr)
	stopProc(t, p)
	quiet(p)

	p = startExactProc(t, bin, "server", "-data-dir", dir)
	check(p, httpAddr)
	stopProc(t, p)
	quiet(p)

	for _, bad := range [][]string{
		{"-node", "n8"},
		{"-datacenter", "dc1"},
		{"-raft-addr", servertest.FreeAddr(t)},
	} {
		args := append([]string{"server", "-data-dir", dir}, bad...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
			t.Fatalf("kvx %q: %v, want exit 2\n%s", args, err, out)
		}
		if !strings.Contains(string(out), dir) || !strings.Contains(string(out), bad[0]) || !strings.Contains(string(out), bad[1]) {
			t.Fatalf("kvx %q: the refusal does not name the data dir, the flag and its value:\n%s", args, out)
		}
		if strings.Contains(string(out), "server started") {
			t.Fatalf("kvx %q started before refusing:\n%s", args, out)
		}
	}

	// Another HTTP address is taken, and remembered for the next restart.
	httpAddr2 := servertest.FreeAddr(t)
	p = startExactProc(t, bin, "server", "-data-dir", dir, "-http-addr", httpAddr2)
	check(p, httpAddr2)
	stopProc(t, p)
	p = startExactProc(t, bin, "server", "-data-dir", dir)
	check(p, httpAddr2)
	stopProc(t, p)
}

// A three-node cluster of real processes stopped with SIGTERM, one node
// after the other, logs no error: not when the leader goes first, not when
// the followers do. (The nodes left running see their peers go, which is a
// warning: each stopping node says goodbye first.)
func TestClusterOfProcessesStopsWithoutErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end with real processes: skipped under -short")
	}
	bin := buildKVX(t)
	for _, leaderFirst := range []bool{true, false} {
		raftAddrs := []string{servertest.FreeAddr(t), servertest.FreeAddr(t), servertest.FreeAddr(t)}
		ps := make([]*proc, 3)
		for i := range ps {
			args := []string{"-node", fmt.Sprintf("n%d", i+1), "-data-dir", t.TempDir(), "-raft-addr", raftAddrs[i], "-bootstrap-expect", "3"}
			if i > 0 {
				args = append(args, "-join", raftAddrs[0])
			}
			ps[i] = startProc(t, bin, args...)
		}
		var leader int
		servertest.Eventually(t, "a leader", func() bool { leader = leaderOf(ps); return leader >= 0 })
		for _, p := range ps {
			if _, err := p.c.KV().Put(&consulapi.KVPair{Key: "e2e/k", Value: []byte("v")}, nil); err != nil {
				t.Fatal(err)
			}
		}
		order := []int{}
		for i := range ps {
			if i != leader {
				order = append(order, i)
			}
		}
		if leaderFirst {
			order = append([]int{leader}, order...)
		} else {
			order = append(order, leader)
		}
		for _, i := range order {
			stopProc(t, ps[i])
		}
		for i, p := range ps {
			for _, line := range strings.Split(p.log.String(), "\n") {
				if strings.Contains(line, "level=ERROR") {
					t.Errorf("leader first %v: node n%d logged an error: %s", leaderFirst, i+1, line)
				}
			}
		}
	}
}
