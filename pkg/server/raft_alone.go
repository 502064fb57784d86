package server

import (
	"github.com/hashicorp/raft"
)

// campaignAlone makes a server that is the only voter of its Raft
// configuration (-dev, -bootstrap-expect 1, or such a server restarted)
// stand for election at once instead of after a heartbeat timeout.
//
// A follower waits one to two heartbeat timeouts without hearing from a
// leader before it stands; alone, nobody else will ever be heard, so that
// wait is only start-up time. The wait is why -dev used to run Raft with
// 50 ms timers, and those timers cost an idle server dozens of wake-ups a
// second for good: the leader checks its lease every half timeout. With this,
// every server runs the same timers and still starts in milliseconds.
//
// It asks through Raft's own TimeoutNow RPC, sent to itself: the message
// a leader sends to the successor it hands leadership to, upon which a
// follower stands at once. Whatever goes wrong, the follower's own timer
// still elects it.
func (s *Server) campaignAlone() {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters, self := 0, false
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
			self = self || srv.ID == raft.ServerID(s.opts.NodeName)
		}
	}
	if voters != 1 || !self || s.raft.State() != raft.Follower {
		return
	}
	id, addr := raft.ServerID(s.opts.NodeName), s.transport.LocalAddr()
	req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax,
		ID:              []byte(id),
		Addr:            s.transport.EncodePeer(id, addr),
	}}
	if err := s.transport.TimeoutNow(id, addr, req, &raft.TimeoutNowResponse{}); err != nil {
		s.logger.Debug("stand for election at once", "err", err)
	}
}
