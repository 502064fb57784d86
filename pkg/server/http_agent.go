package server

import (
	"bytes"
	"net"
	"net/http"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/kvxproject/kvx/pkg/acl"
)

func onlyGET(r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(r, "GET")
	}
	return nil
}

func (s *Server) handleStatusLeader(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	addr, _ := s.raft.LeaderWithID()
	writeJSON(w, http.StatusOK, string(addr))
	return nil
}

func (s *Server) raftConfiguration() ([]raft.Server, uint64, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, err
	}
	return f.Configuration().Servers, f.Index(), nil
}

func (s *Server) handleStatusPeers(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	servers, _, err := s.raftConfiguration()
	if err != nil {
		return err
	}
	peers := []string{}
	for _, srv := range servers {
		if srv.Suffrage == raft.Voter {
			peers = append(peers, string(srv.Address))
		}
	}
	writeJSON(w, http.StatusOK, peers)
	return nil
}

type raftServerJSON struct {
	ID              string
	Node            string
	Address         string
	Leader          bool
	ProtocolVersion string
	Voter           bool
}

func (s *Server) handleRaftConfiguration(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	o, err := s.parseQuery(r.URL.Query())
	if err != nil {
		return err
	}
	if s.mustForward(o) {
		s.forward(w, r)
		return nil
	}
	if err := s.need(r, (*acl.Authorizer).OperatorRead); err != nil {
		return err
	}
	servers, index, err := s.raftConfiguration()
	if err != nil {
		return err
	}
	_, leaderID := s.raft.LeaderWithID()
	out := struct {
		Servers []raftServerJSON
		Index   uint64
	}{Servers: []raftServerJSON{}, Index: index}
	for _, srv := range servers {
		out.Servers = append(out.Servers, raftServerJSON{
			ID: string(srv.ID), Node: string(srv.ID), Address: string(srv.Address),
			Leader: srv.ID == leaderID, ProtocolVersion: "3", Voter: srv.Suffrage == raft.Voter,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleAgentSelf(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	if err := s.need(r, func(a *acl.Authorizer) bool { return a.AgentRead(s.opts.NodeName) }); err != nil {
		return err
	}
	host, portStr, _ := net.SplitHostPort(s.RaftAddr())
	port, _ := strconv.Atoi(portStr)
	stats := s.raft.Stats()
	stats["blocking_queries"] = strconv.FormatInt(s.blocking.Load(), 10)
	stats["blocking_wakeups"] = strconv.FormatInt(s.wakeups.Load(), 10)
	out := map[string]any{
		"Config": map[string]any{
			"Datacenter":        s.opts.Datacenter,
			"PrimaryDatacenter": s.opts.Datacenter,
			"NodeName":          s.opts.NodeName,
			"NodeID":            s.opts.NodeName,
			"Version":           s.opts.Version,
			"Revision":          "",
			"Server":            true,
		},
		"Member": map[string]any{
			"Name": s.opts.NodeName, "Addr": host, "Port": port, "Status": 1,
			"Tags": map[string]string{"role": "consul", "dc": s.opts.Datacenter, "build": s.opts.Version, "port": portStr, "id": s.opts.NodeName},
		},
		"Stats": map[string]any{"raft": stats},
		"Meta":  map[string]string{},
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleAgentMetrics(w http.ResponseWriter, r *http.Request) error {
	if err := onlyGET(r); err != nil {
		return err
	}
	if err := s.need(r, func(a *acl.Authorizer) bool { return a.AgentRead(s.opts.NodeName) }); err != nil {
		return err
	}
	v, err := s.tel.inmem.DisplayMetrics(w, r)
	if err != nil {
		return err
	}
	summary, ok := v.(gometricsSummary)
	if !ok {
		writeJSON(w, http.StatusOK, v)
		return nil
	}
	if r.URL.Query().Get("format") == "prometheus" {
		var buf bytes.Buffer
		writePrometheus(&buf, summary)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(buf.Bytes())
		return nil
	}
	writeJSON(w, http.StatusOK, summary)
	return nil
}
