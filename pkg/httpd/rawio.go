package httpd

import (
	"io"
	"net"
	"syscall"
)

// Reads and writes on a plain TCP or Unix connection go straight to the
// socket, non-blocking, through syscall.RawConn (rawio_linux.go): Go's own
// path enters each read and write as a blocking system call would, which
// wakes the runtime's monitor thread (sysmon) whenever the process was
// idle, and a 30 kB write that takes longer than the monitor's 20 µs tick
// gets its processor handed to another thread. On an idle server woken by
// one request at a time those thread wake-ups cost more than the request.
// The socket is non-blocking (Go sets it so), so the calls never wait in
// the kernel: a read or write that would wait returns EAGAIN and RawConn
// parks the goroutine on the network poller as usual, deadlines and Close
// included.

// rawConnOf is the RawConn for direct socket I/O on nc (a plain TCP or
// Unix connection; the server passes the socket under a transparent
// wrapper such as the per-client connection cap's), or nil where it is not
// used (TLS, other wrappers, other systems).
func rawConnOf(nc net.Conn) syscall.RawConn {
	if !rawIO {
		return nil
	}
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// rawReader reads a connection through its RawConn. The callback RawConn
// calls is bound once per connection (fn), with its arguments and results
// in the struct: a closure made per call would escape to the heap, an
// allocation per read.
type rawReader struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool
	p     []byte
	n     int
	errno syscall.Errno
}

func (r *rawReader) read(fd uintptr) bool {
	r.n, r.errno = rawRead(fd, r.p)
	return r.errno != syscall.EAGAIN
}

func (r *rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.fn == nil {
		r.fn = r.read
	}
	r.p = p
	err := r.rc.Read(r.fn)
	n, errno := r.n, r.errno
	r.p, r.n, r.errno = nil, 0, 0
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// rawWriter writes a connection through its RawConn, its callback bound
// once per connection as rawReader's.
type rawWriter struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool
	vec   [][]byte
	errno syscall.Errno
}

// writev writes all of vec, in as few writev calls as the socket's buffer
// allows.
func (w *rawWriter) writev(vec [][]byte) error {
	if w.fn == nil {
		w.fn = w.write
	}
	w.vec = vec
	err := w.rc.Write(w.fn)
	errno := w.errno
	w.vec, w.errno = nil, 0
	if err != nil {
		return err
	}
	if errno != 0 {
		return &net.OpError{Op: "write", Net: "tcp", Err: errno}
	}
	return nil
}

func (w *rawWriter) write(fd uintptr) bool {
	for {
		for len(w.vec) > 0 && len(w.vec[0]) == 0 {
			w.vec = w.vec[1:]
		}
		if len(w.vec) == 0 {
			return true
		}
		n, errno := rawWritev1(fd, w.vec)
		if errno == syscall.EAGAIN {
			return false // wait until the socket takes more
		}
		if errno != 0 {
			w.errno = errno
			return true
		}
		for n > 0 {
			k := min(n, len(w.vec[0]))
			w.vec[0] = w.vec[0][k:]
			n -= k
			if len(w.vec[0]) == 0 {
				w.vec = w.vec[1:]
			}
		}
	}
}
