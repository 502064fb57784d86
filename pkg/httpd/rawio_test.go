package httpd

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"
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

// An answer far larger than the socket's buffer, to a client that reads it
// slowly, arrives whole and in order: the direct writes go on after each
// partial write and each wait for the socket to take more.
func TestRawWritesLargeAnswerToSlowReader(t *testing.T) {
	body := make([]byte, 16<<20)
	for i := range body {
		body[i] = byte(i*7 + i>>12)
	}
	addr := startFast(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})})
	c := dial(t, addr)
	io.WriteString(c, "GET /big HTTP/1.1\r\n"+host+"\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(body))
	buf := make([]byte, 64<<10)
	for len(got) < len(body) {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
		if len(got) < 1<<20 {
			time.Sleep(time.Millisecond) // slow at first: the server's socket fills
		}
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes, want %d, equal prefix %d", len(got), len(body), commonPrefix(got, body))
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
