package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One TCP port carries all server-to-server traffic. A connection starts with
// one byte saying what follows (Raft's own RPCs, or HTTP: requests forwarded
// to the leader, and the cluster's join handshake) and the 16-byte cluster ID
// of the dialer (see clusterid.go). So a node needs to know only the Raft
// address of the leader, which Raft itself tells it.
const (
	muxRaft byte = 'R'
	muxHTTP byte = 'H'
)

type muxListener struct {
	ln      net.Listener
	cluster *clusterState
	tls     func() *tls.Config // mutual TLS of the Raft port; nil for none
	logger  *slog.Logger
	raft    *subListener
	http    *subListener
	wg      sync.WaitGroup
	closed  chan struct{}

	mu    sync.Mutex
	conns map[*muxConn]struct{} // every open accepted connection
}

// muxConn is an accepted connection the mux closes when it closes, as the
// kernel would for a process that exits: a peer must never wait forever on
// a node that has stopped.
type muxConn struct {
	net.Conn
	m    *muxListener
	once sync.Once
}

func (c *muxConn) Close() error {
	c.once.Do(func() {
		c.m.mu.Lock()
		delete(c.m.conns, c)
		c.m.mu.Unlock()
	})
	return c.Conn.Close()
}

func newMux(addr string, cluster *clusterState, logger *slog.Logger, tlsConf func() *tls.Config) (*muxListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen raft %s: %w", addr, err)
	}
	m := &muxListener{ln: ln, cluster: cluster, logger: logger, tls: tlsConf, closed: make(chan struct{}), conns: map[*muxConn]struct{}{}}
	m.raft = &subListener{parent: m, ch: make(chan net.Conn, 16), closed: make(chan struct{})}
	m.http = &subListener{parent: m, ch: make(chan net.Conn, 16), closed: make(chan struct{})}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

func (m *muxListener) serve() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		mc := &muxConn{Conn: conn, m: m}
		m.mu.Lock()
		m.conns[mc] = struct{}{}
		m.mu.Unlock()
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(mc)
		}()
	}
}

func (m *muxListener) route(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m.tls != nil {
		tc := tls.Server(conn, m.tls())
		if err := tc.Handshake(); err != nil {
			m.logger.Warn("refused a connection on the raft port: TLS", "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = tc
	}
	var hdr [1 + len(clusterID{})]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	var peer clusterID
	copy(peer[:], hdr[1:])
	if !m.cluster.accepts(hdr[0], peer) {
		m.logger.Warn("refused a connection from another cluster", "remote", conn.RemoteAddr().String(),
			"their_cluster", peer.String(), "our_cluster", m.cluster.get().String())
		conn.Close()
		return
	}
	var sub *subListener
	switch hdr[0] {
	case muxRaft:
		mine := m.cluster.get()
		if _, err := conn.Write(mine[:]); err != nil {
			conn.Close()
			return
		}
		sub = m.raft
	case muxHTTP:
		sub = m.http
	default:
		conn.Close()
		return
	}
	select {
	case sub.ch <- conn:
	case <-sub.closed:
		conn.Close()
	case <-m.closed:
		conn.Close()
	}
}

func (m *muxListener) Close() error {
	select {
	case <-m.closed:
		return nil
	default:
	}
	close(m.closed)
	err := m.ln.Close()
	m.wg.Wait()
	m.mu.Lock()
	open := make([]*muxConn, 0, len(m.conns))
	for c := range m.conns {
		open = append(open, c)
	}
	m.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
	return err
}

// subListener is a net.Listener for one kind of muxed connection.
type subListener struct {
	parent    *muxListener
	ch        chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	case <-s.parent.closed:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; the socket itself belongs to the mux.
func (s *subListener) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}
func (s *subListener) Addr() net.Addr { return s.parent.ln.Addr() }

// dialMux opens a connection of the given kind to a server's Raft address,
// over mutual TLS when tlsConf is not nil.
func dialMux(ctx context.Context, addr string, kind byte, cluster clusterID, timeout time.Duration, tlsConf func() *tls.Config) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsConf != nil {
		hctx, cancel := context.WithTimeout(ctx, timeout)
		tc := tls.Client(conn, tlsConf())
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("tls with %s: %w", addr, err)
		}
		conn = tc
	}
	if _, err := conn.Write(append([]byte{kind}, cluster[:]...)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// raftLayer is Raft's StreamLayer over the mux.
type raftLayer struct {
	*subListener
	cluster *clusterState
	policy  *logPolicy
	tls     func() *tls.Config
}

var _ raft.StreamLayer = raftLayer{}

func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	mine := l.cluster.get()
	if mine == zeroCluster {
		return nil, errors.New("raft dial: this node does not know its cluster yet")
	}
	conn, err := dialMux(context.Background(), string(addr), muxRaft, mine, timeout, l.tls)
	l.policy.dialed(string(addr), err)
	if err != nil {
		return nil, err
	}
	var theirs clusterID
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	if _, err := io.ReadFull(conn, theirs[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft dial %s: no cluster handshake (another cluster?): %w", addr, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if theirs != mine {
		conn.Close()
		return nil, fmt.Errorf("raft dial %s: it belongs to cluster %s, not %s", addr, theirs, mine)
	}
	return conn, nil
}
