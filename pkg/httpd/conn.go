package httpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Connection states. Shutdown closes new and idle ones; the sweeper
// (timeouts.go) closes idle ones past IdleTimeout, and new ones or ones
// reading headers past ReadHeaderTimeout.
const (
	stateNew    int32 = iota // accepted, its first request's headers not read yet
	stateHeader              // reading a request's headers
	stateActive              // running a handler
	stateIdle                // between requests
	stateClosed
)

// maxPostHandlerReadBytes is what net/http reads of a body its handler
// left unread, to keep the connection; past it the connection is closed.
const maxPostHandlerReadBytes = 256 << 10

// rstAvoidanceDelay: net/http's wait between a half close and the close of
// a connection whose request body was not read, so the client reads the
// answer before a reset.
const rstAvoidanceDelay = 500 * time.Millisecond

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

type conn struct {
	s          *Server
	rwc        net.Conn
	w          net.Conn        // where responses are written: rwc, or the TCP conn under a transparent wrapper
	writev     bool            // w writes net.Buffers in one syscall
	raw        syscall.RawConn // w's socket for direct reads and writes, or nil (rawio.go)
	rr         rawReader
	rw         rawWriter
	br         *bufio.Reader
	remoteAddr string
	tlsState   *tls.ConnectionState
	state      atomic.Int32

	hdr       []byte    // the request line and headers being read
	head      []byte    // the response head being built
	buf       []byte    // response body bytes not yet written
	keys      []string  // header keys, sorted for writing
	vec       [6][]byte // the buffers of one write
	bufs      net.Buffers
	chunkHead [20]byte
	wcopy     []byte       // a write's buffers copied together (no writev)
	werr      error        // the connection's write error
	waiting   atomic.Bool  // a request without a body is in its handler: the sweeper checks that its client is still there (alive.go)
	peekAt    atomic.Int64 // the request's age (ns) at which the sweeper peeks next

	since atomic.Int64 // when the connection entered its state (monotonic ns, see now)

	mu     sync.Mutex
	cancel context.CancelFunc // the request in flight's
	closed bool
}

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{s: s, rwc: rwc, w: rwc}
	c.since.Store(now())
	switch rwc.(type) {
	case *net.TCPConn, *net.UnixConn:
		c.writev = true
	case *tls.Conn:
	default:
		if u, ok := rwc.(interface{ NetConn() net.Conn }); ok {
			if tc, ok := u.NetConn().(*net.TCPConn); ok {
				c.w, c.writev = tc, true
			}
		}
	}
	// A transparent wrapper's socket is read and written directly too; a
	// TLS connection is read and written by crypto/tls.
	if _, isTLS := rwc.(*tls.Conn); !isTLS {
		if c.raw = rawConnOf(c.w); c.raw != nil {
			c.rr.rc, c.rw.rc = c.raw, c.raw
		}
	}
	if a := rwc.RemoteAddr(); a != nil {
		c.remoteAddr = a.String()
	}
	return c
}

// closeNow closes the connection and cancels its request in flight (Close).
func (c *conn) closeNow() {
	c.state.Store(stateClosed)
	c.rwc.Close()
	c.mu.Lock()
	c.closed = true
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
}

func (c *conn) setCancel(cancel context.CancelFunc) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.cancel = cancel
	return true
}

func (c *conn) serve() {
	handedOver := false
	defer func() {
		if handedOver {
			return
		}
		c.rwc.Close()
		c.state.Store(stateClosed)
		c.s.trackConn(c, false)
		if c.br != nil {
			c.br.Reset(nil)
			readerPool.Put(c.br)
			c.br = nil
		}
	}()
	if tc, ok := c.rwc.(*tls.Conn); ok {
		if !c.handshake(tc) {
			return
		}
		if c.tlsState.NegotiatedProtocol == "h2" {
			handedOver = true
			c.s.handOver(c, tc)
			return
		}
	}
	c.br = readerPool.Get().(*bufio.Reader)
	if c.raw != nil {
		c.br.Reset(&c.rr)
	} else {
		c.br.Reset(c.rwc)
	}
	limit := c.s.maxHeaderBytes() + 4096 // as net/http
	for {
		if c.br.Buffered() == 0 {
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		// The headers are timed from the first byte (from the accept for
		// the first request, as net/http).
		if c.state.Load() == stateIdle {
			c.since.Store(now())
			if !c.state.CompareAndSwap(stateIdle, stateHeader) {
				return // closed: idle too long, or Shutdown
			}
		}
		var err error
		c.hdr, err = readHeaderBlock(c.br, c.hdr[:0], limit)
		if err != nil && !errors.Is(err, errHeaderTooLarge) {
			return
		}
		var p parsed
		ok := false
		if err == nil {
			p, ok = parseRequest(c.hdr)
		}
		if !ok {
			handedOver = true
			c.handOverRead()
			return
		}
		if !c.state.CompareAndSwap(stateHeader, stateActive) && !c.state.CompareAndSwap(stateNew, stateActive) {
			return // closed: headers too slow, or Close
		}
		if cap(c.hdr) > 16<<10 {
			c.hdr = nil // a rare big request: do not keep its buffer
		}
		if !c.serveRequest(p) {
			return
		}
	}
}

// handOverRead gives the connection to net/http with what was read of it.
func (c *conn) handOverRead() {
	c.rwc.SetReadDeadline(time.Time{})
	rc := &replayConn{Conn: c.rwc, pending: bytes.Clone(c.hdr), br: c.br}
	c.br = nil // the replayConn owns it now
	c.s.handOver(c, rc)
}

func (c *conn) handshake(tc *tls.Conn) bool {
	if d := c.s.ReadHeaderTimeout; d > 0 {
		tc.SetDeadline(time.Now().Add(d))
	}
	if err := tc.HandshakeContext(context.Background()); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && tlsRecordHeaderLooksLikeHTTP(re.RecordHeader) {
			re.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"))
			re.Conn.Close()
			return false
		}
		c.s.logf("http: TLS handshake error from %s: %v", c.remoteAddr, err)
		return false
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tlsState = &st
	return true
}

func tlsRecordHeaderLooksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// serveRequest runs the handler for one request and writes its answer;
// it reports whether the connection can carry another request.
func (c *conn) serveRequest(p parsed) bool {
	p.req.RemoteAddr = c.remoteAddr
	p.req.TLS = c.tlsState
	ctx, cancel := context.WithCancel(context.Background())
	if !c.setCancel(cancel) {
		cancel()
		return false
	}
	req := p.req.WithContext(ctx)
	w := &response{c: c, req: req, header: make(http.Header, 8), contentLength: -1,
		wantsClose: p.wantsClose, wants10KeepAlive: p.wants10KeepAlive, isHEAD: req.Method == "HEAD"}
	var b *body
	if req.ContentLength > 0 {
		b = &body{br: c.br, remaining: req.ContentLength}
		req.Body = b
		w.body = b
	} else {
		req.Body = http.NoBody
	}
	if b == nil {
		// No body: the handler runs here, and the sweeper notices a client
		// that goes away meanwhile and cancels the request (alive.go). The
		// bytes of a pipelined request wait in the socket.
		c.peekAt.Store(int64(aliveAfter))
		c.waiting.Store(true)
		c.runHandler(w, req, cancel)
		c.waiting.Store(false)
	} else {
		c.runHandler(w, req, cancel)
		b.Close()
		if w.lingerClose {
			c.closeWriteAndWait()
			return false
		}
	}
	return !w.closeAfter
}

// runHandler runs the handler and ends its response.
func (c *conn) runHandler(w *response, req *http.Request, cancel context.CancelFunc) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				const size = 64 << 10
				buf := make([]byte, size)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.logf("http: panic serving %v: %v\n%s", c.remoteAddr, p, buf)
			}
			w.closeAfter = true
		}
		cancel()
		c.mu.Lock()
		c.cancel = nil
		c.mu.Unlock()
		c.endResponse(w)
	}()
	c.s.Handler.ServeHTTP(w, req)
	w.finish()
}

// endResponse readies the connection for its next request, or for closing.
func (c *conn) endResponse(w *response) {
	w.done = true
	if w.body != nil {
		unread := w.body.unread()
		if !w.closeAfter && unread > 0 && !w.body.discard(maxPostHandlerReadBytes) {
			w.closeAfter = true
		}
		if w.closeAfter && unread > 0 {
			w.lingerClose = true
		}
	}
	if c.werr != nil {
		w.closeAfter = true
	}
	c.buf = c.buf[:0]
	if !w.closeAfter {
		c.since.Store(now())
		c.state.CompareAndSwap(stateActive, stateIdle)
	}
}

// closeWriteAndWait half-closes the connection and waits a little before
// the close, so the client reads the answer before a reset (net/http does
// this when a request body was left unread).
func (c *conn) closeWriteAndWait() {
	if cw, ok := c.w.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else if tc, ok := c.rwc.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	time.Sleep(rstAvoidanceDelay)
}
