package server_test

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

type storedIdentity struct {
	Node       string `json:"node"`
	Datacenter string `json:"datacenter"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr"`
	ClusterID  string `json:"cluster_id"`
}

func readIdentity(t *testing.T, dir string) storedIdentity {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "node-identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var id storedIdentity
	if err := json.Unmarshal(b, &id); err != nil {
		t.Fatalf("node-identity.json: %v\n%s", err, b)
	}
	return id
}

// A first start on port 0 remembers the ports it got, and the cluster ID.
func TestIdentityRemembersBoundAddresses(t *testing.T) {
	dir := t.TempDir()
	srv, c := startNode(t, server.Options{NodeName: "id0", Datacenter: "dc9", DataDir: dir, HeartbeatTimeout: 100 * time.Millisecond})
	waitLeader(t, srv)
	mustPut(t, c.KV(), "k", "v")
	got := readIdentity(t, dir)
	if got.Node != "id0" || got.Datacenter != "dc9" || got.RaftAddr != srv.RaftAddr() || got.HTTPAddr != srv.HTTPAddr() {
		t.Fatalf("identity = %+v; want node id0, dc9, raft %s, http %s", got, srv.RaftAddr(), srv.HTTPAddr())
	}
	if len(got.ClusterID) != 32 {
		t.Fatalf("identity has no cluster id: %+v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "node-identity.json.tmp")); !os.IsNotExist(err) {
		t.Fatalf("a temp file was left behind: %v", err)
	}
}

// A restart with only the data dir comes back as the same node on the same
// addresses; one that contradicts it is refused before anything is bound.
func TestRestartWithOnlyDataDir(t *testing.T) {
	dir := t.TempDir()
	raftAddr, httpAddr := servertest.FreeAddr(t), servertest.FreeAddr(t)
	srv, c := startNode(t, server.Options{
		NodeName: "id1", Datacenter: "dc7", DataDir: dir, RaftAddr: raftAddr, HTTPAddr: httpAddr,
		HeartbeatTimeout: 100 * time.Millisecond,
	})
	waitLeader(t, srv)
	mustPut(t, c.KV(), "who", "id1")
	cluster := readIdentity(t, dir).ClusterID
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	_, port, _ := net.SplitHostPort(raftAddr)
	for _, tc := range []struct {
		name                  string
		opts                  server.Options
		option, stored, given string
	}{
		{"another node name", server.Options{NodeName: "id2"}, "-node", "id1", "id2"},
		{"another datacenter", server.Options{Datacenter: "dc1"}, "-datacenter", "dc7", "dc1"},
		{"another raft address", server.Options{RaftAddr: "127.0.0.2:" + port}, "-raft-addr", raftAddr, "127.0.0.2:" + port},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.DataDir = dir
			srv, err := server.New(tc.opts)
			if err == nil {
				srv.Close()
				t.Fatal("started; want a refusal")
			}
			var ie *server.IdentityError
			if !errors.Is(err, server.ErrIdentityMismatch) || !errors.As(err, &ie) {
				t.Fatalf("error %v is not an identity mismatch", err)
			}
			for _, want := range []string{dir, tc.option, `"` + tc.stored + `"`, `"` + tc.given + `"`} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}

	// Only the data dir, then an explicit HTTP address (taken and remembered)
	// and the Raft address spelled another way.
	httpAddr2 := servertest.FreeAddr(t)
	for _, step := range []struct {
		opts     server.Options
		wantHTTP string
	}{
		{server.Options{}, httpAddr},
		{server.Options{HTTPAddr: httpAddr2, RaftAddr: "localhost:" + port}, httpAddr2},
		{server.Options{}, httpAddr2},
	} {
		step.opts.DataDir = dir
		srv, c := startExact(t, step.opts)
		if srv.NodeName() != "id1" || srv.RaftAddr() != raftAddr || srv.HTTPAddr() != step.wantHTTP {
			t.Fatalf("restart with %+v: node %s raft %s http %s; want id1 %s %s",
				step.opts, srv.NodeName(), srv.RaftAddr(), srv.HTTPAddr(), raftAddr, step.wantHTTP)
		}
		waitLeader(t, srv)
		p, _, err := c.KV().Get("who", nil)
		if err != nil || p == nil || string(p.Value) != "id1" {
			t.Fatalf("after restart: %+v, %v", p, err)
		}
		self, err := c.Agent().Self()
		if err != nil || self["Config"]["Datacenter"] != "dc7" {
			t.Fatalf("after restart the datacenter is %v (%v), want dc7", self["Config"]["Datacenter"], err)
		}
		if got := readIdentity(t, dir); got.HTTPAddr != step.wantHTTP || got.ClusterID != cluster {
			t.Fatalf("identity after restart = %+v; want http %s, cluster %s", got, step.wantHTTP, cluster)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A data dir made before the identity file (cluster-id but no identity) is
// not started under a guessed name.
func TestLegacyDataDirNeedsNodeOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster-id"), []byte(strings.Repeat("ab", 16)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{DataDir: dir})
	if err == nil {
		srv.Close()
		t.Fatal("a legacy data dir started without -node")
	}
	if !strings.Contains(err.Error(), "give -node and -raft-addr once") {
		t.Fatalf("error %q does not say what to do", err)
	}
	srv, _ = startNode(t, server.Options{DataDir: dir, NodeName: "old", BootstrapExpect: 3, Join: []string{servertest.FreeAddr(t)}})
	if got := readIdentity(t, dir); got.Node != "old" || got.ClusterID != strings.Repeat("ab", 16) {
		t.Fatalf("identity of the legacy data dir = %+v; want node old and its cluster id", got)
	}
	srv.Close()
}
