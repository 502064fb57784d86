package httpd

import (
	"net"
	"syscall"
	"time"
)

// A request without a body runs its handler on the connection's own
// goroutine (no second goroutine reading ahead, no hand-over between the
// two on every request: each hand-over woke a thread). A blocking query
// whose client goes away must still be canceled, so the sweeper
// (timeouts.go) looks, once a second, at each connection whose bodyless
// request has been in its handler for more than aliveAfter: a peek at its
// socket that finds the end of the stream or an error cancels the
// request's context. A client's departure is noticed within about two
// seconds instead of at once; answers that come sooner are not checked.
const (
	aliveEvery = time.Second
	aliveAfter = time.Second
)

// gone reports whether the connection's peer has closed it or it failed:
// a read of one byte that leaves the byte in the socket and does not wait.
// Bytes waiting (a pipelined request) mean the client is there.
func (c *conn) gone() bool {
	var nc net.Conn = c.w
	if _, ok := nc.(syscall.Conn); !ok {
		u, ok := c.rwc.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		nc = u.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	rc.Control(func(fd uintptr) { closed = peerClosed(fd) })
	return closed
}

// cancelRequest cancels the request in flight, if any.
func (c *conn) cancelRequest() {
	c.mu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
}
