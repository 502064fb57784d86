package httpd

import (
	"syscall"
	"unsafe"
)

const rawIO = true

// rawRead is read(2) without the runtime's system call bookkeeping: the
// socket is non-blocking, so it never waits.
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), 0
	}
}

// rawWritev1 is one writev(2) of up to 8 non-empty buffers, likewise.
func rawWritev1(fd uintptr, vec [][]byte) (int, syscall.Errno) {
	var iov [8]syscall.Iovec
	k := 0
	for _, b := range vec {
		if k == len(iov) {
			break
		}
		if len(b) == 0 {
			continue
		}
		iov[k].Base = &b[0]
		iov[k].SetLen(len(b))
		k++
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), 0
	}
}
