package server

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// A panic in a handler is a logged 500 with no detail for the client.
func TestPanicIsALogged500(t *testing.T) {
	logs := &lockedBuf{}
	s := &Server{logger: slog.New(slog.NewTextHandler(logs, nil))}
	h := s.logRequests(func(w http.ResponseWriter, r *http.Request) { panic("secret detail") })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/kv/x", nil))
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "secret") {
		t.Fatalf("answer %d %q; want 500 without the panic's message", w.Code, w.Body.String())
	}
	if l := logs.String(); !strings.Contains(l, "panic serving a request") || !strings.Contains(l, "secret detail") || !strings.Contains(l, "status=500") {
		t.Fatalf("log %q: want the panic, its message and the 500", l)
	}
	// The forwarding proxy's abort is net/http's, not a bug: it goes on up.
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Fatalf("recovered %v, want http.ErrAbortHandler passed on", p)
		}
	}()
	s.logRequests(func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
}

// Every request body is capped, whatever the endpoint reads.
func TestRequestBodiesAreCapped(t *testing.T) {
	s := &Server{logger: slog.New(slog.DiscardHandler)}
	var readErr error
	read := func(w http.ResponseWriter, r *http.Request) { _, readErr = io.Copy(io.Discard, r.Body) }
	for name, h := range map[string]http.Handler{"api": s.logRequests(read), "internal": limitBodies(http.HandlerFunc(read))} {
		readErr = nil
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPut, "/v1/x", strings.NewReader(strings.Repeat("a", maxRequestBody+1))))
		var mb *http.MaxBytesError
		if !errors.As(readErr, &mb) {
			t.Errorf("%s: reading a body over %d bytes: %v; want a MaxBytesError", name, maxRequestBody, readErr)
		}
	}
}

// A client over -http-max-conns-per-client is hung up on; the others are
// served.
func TestConnectionsPerClientAreCapped(t *testing.T) {
	s, err := New(Options{Dev: true, NodeName: "n", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", MaxConnsPerClient: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	get := func(c net.Conn) (string, error) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, "GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return "", err
		}
		return bufio.NewReader(c).ReadString('\n')
	}
	for range 3 {
		c, err := net.Dial("tcp", s.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns[:2] {
		if line, err := get(c); err != nil || !strings.Contains(line, "200") {
			t.Fatalf("connection %d within the cap: %q, %v", i, line, err)
		}
	}
	if line, err := get(conns[2]); err == nil && line != "" {
		t.Fatalf("the third connection was served: %q", line)
	}
}
