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

// rawReader reads a connection through its RawConn.
type rawReader struct{ rc syscall.RawConn }

func (r *rawReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n     int
		errno syscall.Errno
	)
	if err := r.rc.Read(func(fd uintptr) bool {
		n, errno = rawRead(fd, p)
		return errno != syscall.EAGAIN
	}); err != nil {
		return 0, err
	}
	switch {
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// rawWritev writes all of vec through rc, in as few writev calls as the
// socket's buffer allows.
func rawWritev(rc syscall.RawConn, vec [][]byte) error {
	var errno syscall.Errno
	if err := rc.Write(func(fd uintptr) bool {
		for {
			for len(vec) > 0 && len(vec[0]) == 0 {
				vec = vec[1:]
			}
			if len(vec) == 0 {
				return true
			}
			var n int
			n, errno = rawWritev1(fd, vec)
			if errno == syscall.EAGAIN {
				errno = 0
				return false // wait until the socket takes more
			}
			if errno != 0 {
				return true
			}
			for n > 0 {
				k := min(n, len(vec[0]))
				vec[0] = vec[0][k:]
				n -= k
				if len(vec[0]) == 0 {
					vec = vec[1:]
				}
			}
		}
	}); err != nil {
		return err
	}
	if errno != 0 {
		return &net.OpError{Op: "write", Net: "tcp", Err: errno}
	}
	return nil
}
