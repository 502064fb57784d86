package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// A cluster ID travels in the handshake of every server-to-server connection,
// so that a node never takes Raft traffic, or forwarded writes, meant for
// another cluster: after a node stops, its address may be taken by a server
// of another cluster, and its peers go on dialing that address. Without the
// check the stranger could acknowledge Raft entries in its place.
//
// The ID is derived from the bootstrap configuration, so every node that
// bootstraps with the same servers computes the same ID; a node that joins
// learns it in the hello handshake, before it asks to be added. It is kept in
// the node's identity file (identity.go).
//
// Raft connections need the same, known ID on both sides: the dialer sends
// its ID and the acceptor answers with its own, and either side hangs up on a
// mismatch. So a fresh node of another cluster (which would accept entries
// from any leader) cannot stand in for a stopped peer either. HTTP
// connections (hello, join, forwarded requests) are refused only when both
// IDs are known and differ, since a fresh node must be able to say hello.

type clusterID [16]byte

var zeroCluster clusterID

func (c clusterID) String() string { return hex.EncodeToString(c[:]) }

func parseClusterID(s string) (clusterID, error) {
	var c clusterID
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != len(c) {
		return c, fmt.Errorf("bad cluster id %q", s)
	}
	copy(c[:], b)
	return c, nil
}

// clusterIDFor derives the ID of a cluster from its bootstrap configuration.
func clusterIDFor(servers []raft.Server) clusterID {
	parts := make([]string, len(servers))
	for i, s := range servers {
		parts[i] = string(s.ID) + "=" + string(s.Address)
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte("kvx-cluster\n" + strings.Join(parts, "\n")))
	var c clusterID
	copy(c[:], sum[:])
	return c
}

// clusterState holds this node's cluster ID, readable without locks by every
// dial and accept.
type clusterState struct {
	id      atomic.Pointer[clusterID]
	persist func(clusterID) error // nil with -dev
}

func (c *clusterState) get() clusterID {
	if p := c.id.Load(); p != nil {
		return *p
	}
	return zeroCluster
}

// set records the ID (persisting it) unless one is known already. It
// reports an ID other than the one known as an error.
func (c *clusterState) set(id clusterID) error {
	if id == zeroCluster {
		return nil
	}
	if mine := c.get(); mine != zeroCluster {
		if mine != id {
			return fmt.Errorf("this node belongs to cluster %s, not %s", mine, id)
		}
		return nil
	}
	if c.persist != nil {
		if err := c.persist(id); err != nil {
			return fmt.Errorf("keep cluster id: %w", err)
		}
	}
	c.id.Store(&id)
	return nil
}

// accepts reports whether a connection of kind announcing peer may be served.
func (c *clusterState) accepts(kind byte, peer clusterID) bool {
	mine := c.get()
	if kind == muxRaft {
		return mine != zeroCluster && peer == mine
	}
	return mine == zeroCluster || peer == zeroCluster || peer == mine
}
