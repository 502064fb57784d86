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
// (timeouts.go) looks, once a second, for the connections whose bodyless
// request has been in its handler for more than aliveAfter: a peek at the
// socket that finds the end of the stream or an error cancels the
// request's context. A request is peeked at again when its age has
// doubled, and at least every aliveMaxGap: a fleet's thousands of blocking
// queries, each minutes long, cost a few peeks a second rather than one per
// query per second. A client that leaves at once is noticed within about
// two seconds, one that leaves after a long wait within its age or
// aliveMaxGap; answers that come within aliveAfter are never peeked at.
const (
	aliveEvery  = time.Second
	aliveAfter  = time.Second
	aliveMaxGap = time.Minute
)

// nextPeekAge is the request age at which to peek again after one at age.
func nextPeekAge(age int64) int64 {
	return min(2*age, age+int64(aliveMaxGap))
}

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
