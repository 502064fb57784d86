package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// A durable node remembers who it is in <data-dir>/node-identity.json,
// written at its first start: node name (its Raft server ID), datacenter,
// Raft address, HTTP address and, once known, its cluster ID. A restart with
// only -data-dir comes back as the same node on the same addresses. An option
// that is given wins over the file, which wins over the default, but the
// cluster knows a node by its name and Raft address, and clients by its
// datacenter: a restart that gives another node name, datacenter or Raft
// address is refused (ErrIdentityMismatch) instead of joining the cluster as
// a stranger. Another HTTP address is taken, and remembered.

const identityFileName = "node-identity.json"

// legacyClusterFile is where kvx kept the cluster ID before the identity file.
const legacyClusterFile = "cluster-id"

// identity is the content of the identity file.
type identity struct {
	Node       string `json:"node"`
	Datacenter string `json:"datacenter"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr"`
	ClusterID  string `json:"cluster_id,omitempty"`
}

// ErrIdentityMismatch is wrapped by the error of a start whose options
// contradict the identity stored in its data dir.
var ErrIdentityMismatch = errors.New("options contradict the data dir's identity")

// IdentityError says which option contradicts the data dir, and how.
type IdentityError struct {
	DataDir string
	Option  string // the command-line flag: -node, -datacenter, -raft-addr
	Stored  string
	Given   string
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("data dir %s belongs to %s %q (see %s), but %s is %q: start it with its own %s, or give another -data-dir",
		e.DataDir, e.Option, e.Stored, filepath.Join(e.DataDir, identityFileName), e.Option, e.Given, e.Option)
}

func (e *IdentityError) Is(target error) bool { return target == ErrIdentityMismatch }

// loadIdentity reads the identity file of dataDir; ok is false when there is
// none yet. A cluster ID kept by an older kvx in <data-dir>/cluster-id is
// taken over.
func loadIdentity(dataDir string) (id identity, ok bool, err error) {
	path := filepath.Join(dataDir, identityFileName)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return id, false, fmt.Errorf("read node identity: %w", err)
	default:
		if err := json.Unmarshal(b, &id); err != nil {
			return id, false, fmt.Errorf("read node identity %s: %w", path, err)
		}
		if id.Node == "" || id.RaftAddr == "" {
			return id, false, fmt.Errorf("read node identity %s: no node name or raft address", path)
		}
		ok = true
	}
	if id.ClusterID == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, legacyClusterFile))
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return id, ok, fmt.Errorf("read cluster id: %w", err)
		default:
			c, err := parseClusterID(string(b))
			if err != nil {
				return id, ok, fmt.Errorf("%s: %w", filepath.Join(dataDir, legacyClusterFile), err)
			}
			id.ClusterID = c.String()
		}
	}
	if id.ClusterID != "" {
		if _, err := parseClusterID(id.ClusterID); err != nil {
			return id, ok, fmt.Errorf("node identity %s: %w", path, err)
		}
	}
	return id, ok, nil
}

// saveIdentity writes the identity file atomically: a temp file, synced,
// renamed over the old one.
func saveIdentity(dataDir string, id identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("write node identity: %w", err)
	}
	path := filepath.Join(dataDir, identityFileName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write node identity: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write node identity %s: %w", path, err)
	}
	return nil
}

// resolveIdentity fills the options the caller left empty from the stored
// identity, and refuses options that contradict it. A Raft address with
// port 0 asks for any port: a node that has one already keeps it.
func resolveIdentity(o *Options, stored identity, ok bool) error {
	if !ok {
		if stored.ClusterID != "" && o.NodeName == "" {
			// A data dir of an older kvx: it has joined a cluster, under a
			// name it did not write down.
			return invalid("data dir %s has no %s (an older kvx made it): give -node and -raft-addr once, as before, and they will be remembered",
				o.DataDir, identityFileName)
		}
		return nil
	}
	mismatch := func(option, stored, given string) error {
		return &IdentityError{DataDir: o.DataDir, Option: option, Stored: stored, Given: given}
	}
	switch {
	case o.NodeName == "":
		o.NodeName = stored.Node
	case o.NodeName != stored.Node:
		return mismatch("-node", stored.Node, o.NodeName)
	}
	switch {
	case o.Datacenter == "":
		o.Datacenter = stored.Datacenter
	case stored.Datacenter != "" && o.Datacenter != stored.Datacenter:
		return mismatch("-datacenter", stored.Datacenter, o.Datacenter)
	}
	switch {
	case o.RaftAddr == "":
		o.RaftAddr = stored.RaftAddr
	case !sameAddr(o.RaftAddr, stored.RaftAddr):
		return mismatch("-raft-addr", stored.RaftAddr, o.RaftAddr)
	default:
		o.RaftAddr = stored.RaftAddr
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = stored.HTTPAddr
	}
	return nil
}

// sameAddr reports whether the address given names the stored one: the same
// string, or the same IP and port once resolved ("localhost:8300" and
// "127.0.0.1:8300"); a given port 0 matches any stored port on that host.
func sameAddr(given, stored string) bool {
	if given == stored {
		return true
	}
	g, err := net.ResolveTCPAddr("tcp", given)
	if err != nil {
		return false
	}
	s, err := net.ResolveTCPAddr("tcp", stored)
	if err != nil {
		return false
	}
	return g.IP.Equal(s.IP) && (g.Port == 0 || g.Port == s.Port)
}

// identityKeeper owns the identity file of a running node: the cluster ID is
// learned after the start, by another goroutine.
type identityKeeper struct {
	mu      sync.Mutex
	dataDir string // empty with -dev: nothing is written
	id      identity
}

// update changes the identity with fn and writes it when it changed.
func (k *identityKeeper) update(fn func(*identity)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	next := k.id
	fn(&next)
	if k.dataDir == "" || next == k.id {
		k.id = next
		return nil
	}
	if err := saveIdentity(k.dataDir, next); err != nil {
		return err
	}
	k.id = next
	return nil
}

// listenAddrToKeep is the HTTP address to remember: the host as given (so
// ":8500" stays every interface) with the port actually bound.
func listenAddrToKeep(given string, bound net.Addr) string {
	host, _, err := net.SplitHostPort(given)
	if err != nil {
		return bound.String()
	}
	return net.JoinHostPort(host, fmt.Sprint(bound.(*net.TCPAddr).Port))
}
