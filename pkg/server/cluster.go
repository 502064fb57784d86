package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Cluster formation without gossip. A server started with -join says hello
// to the addresses given; every hello carries the servers each side knows, so
// knowledge spreads. Once a node knows -bootstrap-expect servers and none of
// them has Raft state, it bootstraps Raft with exactly that set; every node
// that gets there computes the same set, and hashicorp/raft accepts identical
// bootstrap configurations. A node that meets a cluster which already has a
// leader asks to be added as a voter instead.

type peer struct {
	Name     string
	RaftAddr string
}

type helloRequest struct {
	Self  peer
	Known []peer
}

type helloResponse struct {
	Self         peer
	Cluster      string // the responder's cluster ID, empty when it has none yet
	Known        []peer
	Bootstrapped bool   // has a Raft configuration
	Leader       string // Raft address of the leader it knows, if any
}

func (s *Server) self() peer { return peer{Name: s.opts.NodeName, RaftAddr: s.RaftAddr()} }

// discover runs until this node is part of a cluster, or shuts down.
func (s *Server) discover() {
	known := map[string]peer{}
	for _, addr := range s.opts.Join {
		known["addr:"+addr] = peer{RaftAddr: addr}
	}
	for attempt := 0; ; attempt++ {
		// Until it knows its cluster ID as well, the node cannot take part in
		// Raft (see clusterid.go), so it goes on saying hello.
		if s.inCluster() && s.cluster.get() != zeroCluster {
			return
		}
		s.discoverRound(known)
		select {
		case <-s.shutdown:
			return
		case <-time.After(200*time.Millisecond + rand.N(100*time.Millisecond)):
		}
	}
}

func (s *Server) inCluster() bool {
	if addr, _ := s.raft.LeaderWithID(); addr != "" {
		return true
	}
	f := s.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

func (s *Server) discoverRound(known map[string]peer) {
	s.discoverRounds++
	me := s.self()
	s.peersMu.Lock()
	for name, p := range s.peers {
		known[name] = p
	}
	s.peersMu.Unlock()
	var req helloRequest
	req.Self = me
	for _, p := range known {
		if p.Name != "" {
			req.Known = append(req.Known, p)
		}
	}
	var leaderVia string
	someoneBootstrapped := false
	for key, p := range known {
		if p.RaftAddr == me.RaftAddr {
			continue
		}
		var resp helloResponse
		if err := s.internalCall(p.RaftAddr, "/internal/v1/hello", req, &resp); err != nil {
			s.logger.Debug("hello", "addr", p.RaftAddr, "err", err)
			continue
		}
		if p.Name == "" { // an address from -join: now we know its name
			delete(known, key)
		}
		known[resp.Self.Name] = resp.Self
		for _, k := range resp.Known {
			if k.Name != me.Name {
				known[k.Name] = k
			}
		}
		if resp.Bootstrapped {
			someoneBootstrapped = true
		}
		if resp.Cluster != "" {
			id, err := parseClusterID(resp.Cluster)
			if err == nil {
				err = s.cluster.set(id)
			}
			if err != nil {
				s.logger.Warn("cluster id from hello", "addr", p.RaftAddr, "err", err)
			}
		}
		if resp.Leader != "" {
			leaderVia = resp.Self.RaftAddr
		}
	}
	if leaderVia != "" {
		var ok bool
		if err := s.internalCall(leaderVia, "/internal/v1/join", me, &ok); err != nil {
			s.logger.Warn("join", "via", leaderVia, "err", err)
		}
		return
	}
	if someoneBootstrapped || s.opts.BootstrapExpect <= 1 {
		return // a cluster is forming without a leader yet; it will reach us
	}
	servers := []raft.Server{{ID: raft.ServerID(me.Name), Address: raft.ServerAddress(me.RaftAddr)}}
	for name, p := range known {
		if p.Name == name && p.Name != me.Name {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.RaftAddr)})
		}
	}
	if len(servers) < s.opts.BootstrapExpect {
		if s.discoverRounds%20 == 0 { // every ~5 s
			s.logger.Info("waiting for servers to bootstrap with", "know", len(servers), "expect", s.opts.BootstrapExpect)
		}
		return
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	if err := s.cluster.set(clusterIDFor(servers)); err != nil {
		s.logger.Warn("bootstrap", "err", err)
		return
	}
	s.logger.Info("bootstrapping cluster", "servers", len(servers), "cluster", s.cluster.get().String())
	if err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		s.logger.Warn("bootstrap", "err", err)
	}
}

// internalCall posts JSON to another server's internal HTTP endpoint over the mux.
func (s *Server) internalCall(raftAddr, path string, in, out any) error {
	return s.internalCallTimeout(raftAddr, path, in, out, 3*time.Second)
}

func (s *Server) internalCallTimeout(raftAddr, path string, in, out any, timeout time.Duration) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+raftAddr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := s.forwarder.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

// internalHandler serves the public API plus the cluster endpoints, on the
// mux port only.
func (s *Server) internalHandler(public http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", public)
	mux.HandleFunc("POST /internal/v1/hello", s.handleHello)
	mux.HandleFunc("POST /internal/v1/join", s.handleJoin)
	mux.HandleFunc("POST /internal/v1/goodbye", s.handleGoodbye)
	mux.HandleFunc("POST /internal/v1/catalog", s.handleInternalCatalog)
	mux.HandleFunc("POST /internal/v1/nodestate", s.handleInternalNodeState)
	mux.HandleFunc("POST /internal/v1/acks", s.handleInternalAcks)
	return mux
}

// handleGoodbye hears that a peer is stopping cleanly (see sayGoodbye).
func (s *Server) handleGoodbye(w http.ResponseWriter, r *http.Request) {
	var p peer
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil || p.RaftAddr == "" {
		http.Error(w, "bad goodbye", http.StatusBadRequest)
		return
	}
	s.logPolicy.peerLeft(p.Name, p.RaftAddr)
	s.logger.Info("server stopping", "node", p.Name, "raft", p.RaftAddr)
	writeJSON(w, http.StatusOK, true)
}

func (s *Server) handleHello(w http.ResponseWriter, r *http.Request) {
	var req helloRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "bad hello: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.peersMu.Lock()
	if s.peers == nil {
		s.peers = map[string]peer{}
	}
	if req.Self.Name != "" && req.Self.Name != s.opts.NodeName {
		s.peers[req.Self.Name] = req.Self
	}
	resp := helloResponse{Self: s.self()}
	for _, p := range s.peers {
		resp.Known = append(resp.Known, p)
	}
	s.peersMu.Unlock()
	f := s.raft.GetConfiguration()
	resp.Bootstrapped = f.Error() == nil && len(f.Configuration().Servers) > 0
	addr, _ := s.raft.LeaderWithID()
	resp.Leader = string(addr)
	if id := s.cluster.get(); id != zeroCluster {
		resp.Cluster = id.String()
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	if s.raft.State() != raft.Leader {
		s.forward(w, r)
		return
	}
	var p peer
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil || p.Name == "" || p.RaftAddr == "" {
		http.Error(w, "bad join request", http.StatusBadRequest)
		return
	}
	if err := s.raft.AddVoter(raft.ServerID(p.Name), raft.ServerAddress(p.RaftAddr), 0, 10*time.Second).Error(); err != nil {
		http.Error(w, "add voter: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.logger.Info("server joined", "node", p.Name, "raft", p.RaftAddr)
	writeJSON(w, http.StatusOK, true)
}
