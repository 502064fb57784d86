//go:build !linux

package httpd

import "syscall"

// Elsewhere the connections use Go's own reads and writes.
const rawIO = false

func rawRead(fd uintptr, p []byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }

func rawWritev1(fd uintptr, vec [][]byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }
