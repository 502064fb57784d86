package httpd

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves an http.Handler over HTTP/1.1, as an *http.Server would,
// for many keep-alive connections that mostly wait. Its zero value (with a
// Handler) is ready to use; fields must not change once Serve is called.
type Server struct {
	Handler           http.Handler
	ReadHeaderTimeout time.Duration // a request's headers must arrive within it (and a TLS handshake)
	IdleTimeout       time.Duration // an idle keep-alive connection is closed after it
	MaxHeaderBytes    int           // request line and headers (0: http.DefaultMaxHeaderBytes)
	ErrorLog          *log.Logger   // nil: the log package's standard logger

	inShutdown atomic.Bool
	handedOver atomic.Int64 // connections given to net/http

	mu          sync.Mutex
	listeners   map[*net.Listener]struct{}
	conns       map[*conn]struct{}
	fallback    *http.Server  // net/http, for the connections the fast loop hands over
	fbLn        *chanListener // feeds fallback
	fbDone      chan struct{} // closed when fallback's Serve returns
	sweepStop   chan struct{} // stops the timeouts' sweeper (timeouts.go)
	aliveChecks atomic.Int64  // sockets the sweeper peeked at (alive.go)
}

// Serve accepts connections on ln and serves each in its own goroutine. It
// returns http.ErrServerClosed after Shutdown or Close, or the listener's
// error.
func (s *Server) Serve(ln net.Listener) error {
	if !s.trackListener(&ln, true) {
		return http.ErrServerClosed
	}
	defer s.trackListener(&ln, false)
	var delay time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("httpd: Accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(rwc)
		if !s.trackConn(c, true) {
			rwc.Close()
			continue
		}
		go c.serve()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// Shutdown stops accepting connections, closes the idle ones, and waits for
// the active ones to finish their request (ctx bounds the wait: then it
// returns ctx's error). Serve returns http.ErrServerClosed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	err := s.closeListenersLocked()
	fb := s.fallback
	s.mu.Unlock()
	fbErr := make(chan error, 1)
	if fb != nil {
		go func() { fbErr <- fb.Shutdown(ctx) }()
	} else {
		fbErr <- nil
	}
	poll := time.Millisecond
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		if s.closeIdleConns() {
			if e := <-fbErr; e != nil && err == nil {
				err = e
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			poll = min(2*poll, 500*time.Millisecond)
			timer.Reset(poll)
		}
	}
}

// Close closes the listeners and every connection at once; the requests in
// flight see their context canceled.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	err := s.closeListenersLocked()
	for c := range s.conns {
		c.closeNow()
	}
	if s.sweepStop != nil {
		close(s.sweepStop)
		s.sweepStop = nil
	}
	fb := s.fallback
	s.mu.Unlock()
	if fb != nil {
		if e := fb.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

func (s *Server) closeListenersLocked() error {
	var err error
	for ln := range s.listeners {
		if e := (*ln).Close(); e != nil && err == nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
		delete(s.listeners, ln)
	}
	return err
}

// closeIdleConns closes the idle connections and reports whether none is
// left.
func (s *Server) closeIdleConns() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	quiet := true
	stale := now() - int64(5*time.Second) // net/http's: a new connection silent this long counts as idle
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) || c.since.Load() < stale && c.state.CompareAndSwap(stateNew, stateClosed) {
			c.rwc.Close()
			delete(s.conns, c)
			continue
		}
		quiet = false
	}
	return quiet
}

func (s *Server) trackListener(ln *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		if s.listeners == nil {
			s.listeners = map[*net.Listener]struct{}{}
		}
		s.listeners[ln] = struct{}{}
		s.startSweeperLocked()
	} else {
		delete(s.listeners, ln)
	}
	return true
}

func (s *Server) trackConn(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		if s.conns == nil {
			s.conns = map[*conn]struct{}{}
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

// handOver gives a connection to net/http's server for good.
func (s *Server) handOver(c *conn, rwc net.Conn) {
	s.handedOver.Add(1)
	s.mu.Lock()
	delete(s.conns, c)
	if s.inShutdown.Load() {
		s.mu.Unlock()
		rwc.Close()
		return
	}
	if s.fallback == nil {
		s.fallback = &http.Server{
			Handler:           s.Handler,
			ReadHeaderTimeout: s.ReadHeaderTimeout,
			IdleTimeout:       s.IdleTimeout,
			MaxHeaderBytes:    s.MaxHeaderBytes,
			ErrorLog:          s.ErrorLog,
		}
		s.fbLn = newChanListener(rwc.LocalAddr())
		s.fbDone = make(chan struct{})
		go func(fb *http.Server, ln *chanListener, done chan struct{}) {
			defer close(done)
			if err := fb.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logf("httpd: fallback server: %v", err)
			}
		}(s.fallback, s.fbLn, s.fbDone)
	}
	ln := s.fbLn
	s.mu.Unlock()
	ln.give(rwc)
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
		return
	}
	log.New(os.Stderr, "", log.LstdFlags).Printf(format, args...)
}

func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes > 0 {
		return s.MaxHeaderBytes
	}
	return http.DefaultMaxHeaderBytes
}

// chanListener yields the connections handed over to net/http.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// replayConn is a connection whose first bytes were already read by the
// fast loop: Read returns them first.
type replayConn struct {
	net.Conn
	pending []byte
	br      interface {
		Buffered() int
		Read([]byte) (int, error)
	}
}

// CloseWrite half-closes the connection when it can (net/http does before
// closing after a 431).
func (r *replayConn) CloseWrite() error {
	c := r.Conn
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		if _, isTLS := c.(*tls.Conn); !isTLS {
			c = u.NetConn()
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	if r.br != nil {
		if r.br.Buffered() > 0 {
			return r.br.Read(p)
		}
		r.br = nil
	}
	return r.Conn.Read(p)
}
