package server_test

import (
	"fmt"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func withToken(t *testing.T, srv *server.Server, token string) *consulapi.Client {
	t.Helper()
	c, err := client.New(client.Options{Address: srv.HTTPAddr(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Tokens and policies replicate through Raft; a follower forwards writes
// and default reads with their token, and answers ?stale reads with its own
// copy of the ACLs.
func TestACLThroughAFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	srvs, _ := cluster(t, func(o *server.Options) { o.ACL = server.ACLOptions{Enabled: true} })
	var leader, follower *server.Server
	servertest.Eventually(t, "a leader", func() bool {
		for _, s := range srvs {
			if s.IsLeader() {
				leader = s
			}
		}
		return leader != nil
	})
	for _, s := range srvs {
		if s != leader {
			follower = s
			break
		}
	}
	// Bootstrap and create through the follower: forwarded to the leader.
	anon := withToken(t, follower, "")
	boot, _, err := anon.ACL().Bootstrap()
	if err != nil {
		t.Fatalf("bootstrap through a follower: %v", err)
	}
	mgmt := withToken(t, follower, boot.SecretID)
	secret := servertest.TokenWithRules(t, mgmt, "app", `key_prefix "app/" { policy = "write" }`)
	c := withToken(t, follower, secret)
	if _, err := c.KV().Put(&consulapi.KVPair{Key: "app/x", Value: []byte("1")}, nil); err != nil {
		t.Fatalf("write through a follower: %v", err)
	}
	_, err = c.KV().Put(&consulapi.KVPair{Key: "other/x", Value: []byte("1")}, nil)
	denied(t, "refused write through a follower", err)
	_, err = anon.KV().Put(&consulapi.KVPair{Key: "app/y", Value: []byte("1")}, nil)
	denied(t, "anonymous write through a follower", err)
	// Every node resolves the token from its own replicated copy.
	for i, s := range srvs {
		cs := withToken(t, s, secret)
		servertest.Eventually(t, fmt.Sprintf("node %d to know the token", i), func() bool {
			p, _, err := cs.KV().Get("app/x", &consulapi.QueryOptions{AllowStale: true})
			return err == nil && p != nil
		})
		_, _, err := cs.KV().Get("other/x", &consulapi.QueryOptions{AllowStale: true})
		denied(t, fmt.Sprintf("stale read outside the rules on node %d", i), err)
	}
}

// ACLs survive a restart from a snapshot plus log tail.
func TestACLSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	opts := server.Options{
		NodeName: "n1", DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: servertest.FreeAddr(t),
		HeartbeatTimeout: 100 * time.Millisecond, ACL: server.ACLOptions{Enabled: true},
		SnapshotThreshold: 20, SnapshotInterval: 50 * time.Millisecond, TrailingLogs: 5,
	}
	srv, anon := startNode(t, opts)
	waitLeader(t, srv)
	boot, _, err := anon.ACL().Bootstrap()
	if err != nil {
		t.Fatal(err)
	}
	mgmt := withToken(t, srv, boot.SecretID)
	secret := servertest.TokenWithRules(t, mgmt, "app", `key_prefix "app/" { policy = "write" }`)
	for i := range 50 { // enough entries for a snapshot
		mustPut(t, mgmt.KV(), fmt.Sprintf("app/%02d", i), "v")
	}
	servertest.Eventually(t, "a snapshot", func() bool {
		self, err := mgmt.Agent().Self()
		return err == nil && self["Stats"]["raft"].(map[string]any)["last_snapshot_index"] != "0"
	})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv, anon = startNode(t, opts)
	waitLeader(t, srv)
	c := withToken(t, srv, secret)
	servertest.Eventually(t, "the token after the restart", func() bool {
		_, err := c.KV().Put(&consulapi.KVPair{Key: "app/after", Value: []byte("1")}, nil)
		return err == nil
	})
	_, err = c.KV().Put(&consulapi.KVPair{Key: "other", Value: []byte("1")}, nil)
	denied(t, "write outside the rules after the restart", err)
	_, _, err = anon.ACL().Bootstrap()
	denied(t, "bootstrap after the restart", err)
}
