package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// End to end with real processes: three `kvx server` processes form a
// cluster, the leader is killed with SIGKILL in the middle of a stream of
// writes, and every write that was answered true is still there, on the new
// leader and on the killed node once it is restarted from its data dir.

func buildKVX(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kvx")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/kvx").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type proc struct {
	cmd  *exec.Cmd
	log  *servertest.Buffer
	http string
	c    *consulapi.Client
}

// startedLine is logged once the ports are bound, before a leader exists.
var startedLine = regexp.MustCompile(`msg="server started" node=\S+ http=(127\.0\.0\.1:\d+)`)

// exited reports whether the child pid has exited (a zombie not yet
// waited for, or gone).
func exited(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ") // after the command name
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startExactProc(t, bin, append([]string{"server", "-http-addr", "127.0.0.1:0", "-raft-timeout", "300ms"}, args...)...)
}

// startExactProc runs bin with exactly args, and waits for "server started".
func startExactProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{log: &servertest.Buffer{}}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for p.http == "" {
		if m := startedLine.FindStringSubmatch(p.log.String()); m != nil {
			p.http = m[1]
		} else if exited(p.cmd.Process.Pid) || time.Now().After(deadline) {
			t.Fatalf("kvx %v never started:\n%s", args, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := client.New(client.Options{Address: p.http})
	if err != nil {
		t.Fatal(err)
	}
	p.c = c
	return p
}

func leaderOf(ps []*proc) int {
	for _, p := range ps {
		if p == nil {
			continue
		}
		conf, err := p.c.Operator().RaftGetConfiguration(&consulapi.QueryOptions{AllowStale: true})
		if err != nil {
			continue
		}
		for _, s := range conf.Servers {
			if s.Leader {
				for j, q := range ps {
					if q != nil && s.Node == fmt.Sprintf("n%d", j+1) {
						return j
					}
				}
			}
		}
	}
	return -1
}

func TestClusterOfProcessesSurvivesKillOfLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end with real processes: skipped under -short")
	}
	bin := buildKVX(t)
	raftAddrs := []string{servertest.FreeAddr(t), servertest.FreeAddr(t), servertest.FreeAddr(t)}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	args := func(i int) []string {
		a := []string{"-node", fmt.Sprintf("n%d", i+1), "-data-dir", dirs[i], "-raft-addr", raftAddrs[i], "-bootstrap-expect", "3"}
		if i > 0 {
			a = append(a, "-join", raftAddrs[0])
		}
		return a
	}
	ps := make([]*proc, 3)
	for i := range ps {
		ps[i] = startProc(t, bin, args(i)...)
	}
	var leader int
	servertest.Eventually(t, "a leader", func() bool { leader = leaderOf(ps); return leader >= 0 })

	var (
		mu    sync.Mutex
		acked []string
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for i := range ps {
		if i == leader {
			continue
		}
		kv := ps[i].c.KV()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("e2e/%d/%05d", i, n)
				if _, err := kv.Put(&consulapi.KVPair{Key: key, Value: []byte(key)}, nil); err == nil {
					mu.Lock()
					acked = append(acked, key)
					mu.Unlock()
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	servertest.Eventually(t, "writes before the kill", func() bool { return count() >= 100 })
	if err := ps[leader].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = ps[leader].cmd.Wait()
	ps[leader] = nil
	atKill := count()
	servertest.Eventually(t, "writes after the kill", func() bool { return count() >= atKill+100 })
	close(stop)
	wg.Wait()

	checkAll := func(c *consulapi.Client, who string, opts *consulapi.QueryOptions) {
		t.Helper()
		pairs, _, err := c.KV().List("e2e/", opts)
		if err != nil {
			t.Fatalf("%s: list: %v", who, err)
		}
		have := map[string]bool{}
		for _, p := range pairs {
			have[p.Key] = true
		}
		for _, k := range acked {
			if !have[k] {
				t.Fatalf("%s: acknowledged write %s missing (%d acked, %d present)", who, k, len(acked), len(pairs))
			}
		}
	}
	newLeader := -1
	servertest.Eventually(t, "a new leader", func() bool { newLeader = leaderOf(ps); return newLeader >= 0 })
	checkAll(ps[newLeader].c, "new leader", &consulapi.QueryOptions{RequireConsistent: true})

	// The killed node comes back from its data dir alone and catches up.
	ps[leader] = startProc(t, bin, "-node", fmt.Sprintf("n%d", leader+1), "-data-dir", dirs[leader], "-raft-addr", raftAddrs[leader])
	last := acked[len(acked)-1]
	servertest.Eventually(t, "the restarted node to catch up", func() bool {
		p, _, err := ps[leader].c.KV().Get(last, &consulapi.QueryOptions{AllowStale: true})
		return err == nil && p != nil
	})
	checkAll(ps[leader].c, "restarted node", &consulapi.QueryOptions{AllowStale: true})

	// SIGTERM stops a server cleanly, with exit status 0.
	for _, p := range ps {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("server exit after SIGTERM: %v\n%s", err, p.log.String())
		}
	}
	t.Logf("%d acknowledged writes survived the kill (%d before it)", len(acked), atKill)
}
