package httpd

import (
	"net"
	"runtime"
	"testing"
)

// wrapped is a transparent wrapper, as the per-client connection cap's.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

// A plain TCP connection, and one under a transparent wrapper, are read and
// written through the socket directly (on Linux); a wrapper that does not
// say what it wraps is left to its own Read and Write.
func TestRawIOUnderTransparentWrappers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	tc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	s := &Server{}
	want := runtime.GOOS == "linux"
	for name, nc := range map[string]net.Conn{
		"tcp":     tc,
		"wrapped": wrapped{tc},
	} {
		if got := s.newConn(nc).raw != nil; got != want {
			t.Errorf("%s: direct socket I/O %v, want %v", name, got, want)
		}
	}
	type opaque struct{ net.Conn }
	if s.newConn(opaque{tc}).raw != nil {
		t.Error("a wrapper that hides its connection: direct socket I/O, want its own Read and Write")
	}
}
