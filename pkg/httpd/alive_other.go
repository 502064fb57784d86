//go:build !unix

package httpd

// peerClosed cannot peek here: a request runs until its handler ends.
func peerClosed(fd uintptr) bool { return false }
