package connlimit

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Over the cap a connection is closed at once (the client reads EOF) and
// logged; closing one frees a slot for the next.
func TestCapPerClient(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	ln := Wrap(raw, 2, slog.New(slog.NewTextHandler(logs, nil))).(*Listener)
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, _ := dial(), dial()
	s1, s2 := <-accepted, <-accepted
	defer s2.Close()
	third := dial()
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := third.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("third connection: read %d, %v; want EOF (closed by the cap)", n, err)
	}
	if !strings.Contains(logs.String(), "too many from one client") || !strings.Contains(logs.String(), "client=127.0.0.1") {
		t.Fatalf("refusal not logged: %q", logs.String())
	}
	if got := ln.Open("127.0.0.1"); got != 2 {
		t.Fatalf("open = %d, want 2", got)
	}
	s1.Close()
	c1.Close()
	fourth := dial()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a connection within the cap again was not accepted")
	}
	_ = fourth
}
