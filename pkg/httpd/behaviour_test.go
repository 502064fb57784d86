package httpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startFast serves h with httpd on 127.0.0.1:0.
func startFast(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// TestDisconnectCancels: a handler blocked on its request's context is
// released when its client closes the connection.
func TestDisconnectCancels(t *testing.T) {
	started := make(chan struct{}, 1)
	released := make(chan error, 1)
	addr := startFast(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			released <- r.Context().Err()
		case <-time.After(time.Minute):
			released <- errors.New("not canceled within a minute")
		}
	})})
	c := dial(t, addr)
	io.WriteString(c, "GET /v1/kv/k?index=5&wait=10m HTTP/1.1\r\n"+host+"\r\n")
	<-started
	c.Close()
	if err := <-released; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler: %v, want its context canceled", err)
	}
}

// TestPipelinedWaitsForAnswer: a request pipelined behind a blocked one is
// answered after it, in order, and does not cancel it.
func TestPipelinedWaitsForAnswer(t *testing.T) {
	release := make(chan struct{})
	addr := startFast(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			select {
			case <-release:
			case <-r.Context().Done():
				io.WriteString(w, "canceled")
				return
			}
		}
		io.WriteString(w, r.URL.Path)
	})})
	c := dial(t, addr)
	io.WriteString(c, "GET /block HTTP/1.1\r\n"+host+"\r\nGET /second HTTP/1.1\r\n"+host+"\r\n")
	br := bufio.NewReader(c)
	got := make(chan []string, 1)
	go func() { got <- readResponses(t, c, br, "GET", "GET") }()
	close(release)
	out := <-got
	if len(out) != 2 || !strings.HasSuffix(out[0], "\n/block") || !strings.HasSuffix(out[1], "\n/second") {
		t.Fatalf("answers: %q", out)
	}
}

// TestFlushStreams: the client sees the first chunk before the handler
// ends.
func TestFlushStreams(t *testing.T) {
	sawFirst := make(chan struct{})
	addr := startFast(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		<-sawFirst
		io.WriteString(w, "second\n")
	})})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(sawFirst)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

// TestMaxBytesReader: over the limit the handler sees *http.MaxBytesError;
// within, the body.
func TestMaxBytesReader(t *testing.T) {
	addr := startFast(t, &Server{Handler: testHandler()})
	c := dial(t, addr)
	io.WriteString(c, "PUT /maxbytes HTTP/1.1\r\n"+host+"Content-Length: 20\r\n\r\n01234567890123456789")
	br := bufio.NewReader(c)
	out := readResponses(t, c, br, "PUT")
	if len(out) != 1 || !strings.Contains(out[0], "413") {
		t.Fatalf("over the limit: %q", out)
	}
	// the 10 bytes left were drained: the connection carries a request
	io.WriteString(c, "PUT /maxbytes HTTP/1.1\r\n"+host+"Content-Length: 3\r\n\r\nabc")
	if out := readResponses(t, c, br, "PUT"); len(out) != 1 || !strings.HasSuffix(out[0], "fits") {
		t.Fatalf("within the limit: %q", out)
	}
}

// TestIdleTimeout closes an idle keep-alive connection.
func TestIdleTimeout(t *testing.T) {
	addr := startFast(t, &Server{Handler: testHandler(), IdleTimeout: 50 * time.Millisecond})
	c := dial(t, addr)
	io.WriteString(c, "GET /cl?n=3 HTTP/1.1\r\n"+host+"\r\n")
	br := bufio.NewReader(c)
	if out := readResponses(t, c, br, "GET"); len(out) != 1 || !strings.HasSuffix(out[0], "xxx") {
		t.Fatalf("%q", out)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the idle timeout: %v, want EOF", err)
	}
}

// TestReadHeaderTimeout closes a connection whose headers do not arrive,
// on a fresh connection and between requests.
func TestReadHeaderTimeout(t *testing.T) {
	addr := startFast(t, &Server{Handler: testHandler(), ReadHeaderTimeout: 50 * time.Millisecond})
	c := dial(t, addr)
	io.WriteString(c, "GET /cl?n=3 HTTP/1.1\r\n") // and never the rest
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("slow headers: read %q, %v; want a close", b, err)
	}
	c = dial(t, addr) // says nothing
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("silent connection: read %q, %v; want a close", b, err)
	}
	c = dial(t, addr)
	io.WriteString(c, "GET /cl?n=3 HTTP/1.1\r\n"+host+"\r\nGET /cl?n=3 HTTP/1.1\r\n")
	br := bufio.NewReader(c)
	if out := readResponses(t, c, br, "GET"); len(out) != 1 || !strings.HasSuffix(out[0], "xxx") {
		t.Fatalf("%q", out)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("second request's slow headers: %v, want EOF", err)
	}
}

// TestShutdown waits for an active request, closes the idle connections,
// and refuses new ones.
func TestShutdown(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()

	idle := dial(t, addr)
	io.WriteString(idle, "GET /fast HTTP/1.1\r\n"+host+"\r\n")
	idleBR := bufio.NewReader(idle)
	if out := readResponses(t, idle, idleBR, "GET"); len(out) != 1 || !strings.HasSuffix(out[0], "done /fast") {
		t.Fatalf("%q", out)
	}
	active := dial(t, addr)
	io.WriteString(active, "GET /slow HTTP/1.1\r\n"+host+"\r\n")
	<-started

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := idleBR.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: %v, want closed", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) before the active request ended", err)
	default:
	}
	close(release)
	out := readResponses(t, active, bufio.NewReader(active), "GET")
	if len(out) != 1 || !strings.Contains(out[0], "close=true") || !strings.HasSuffix(out[0], "done /slow") {
		t.Fatalf("active request: %q", out)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("a connection after Shutdown was accepted")
	}
}

// TestShutdownDeadline: Shutdown gives up with ctx's error; Close then
// cancels the handler's context.
func TestShutdownDeadline(t *testing.T) {
	started := make(chan struct{})
	var canceled atomic.Bool
	ended := make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		canceled.Store(true)
		close(ended)
	})}
	addr := startFast(t, srv)
	c := dial(t, addr)
	io.WriteString(c, "GET /wait HTTP/1.1\r\n"+host+"\r\n")
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
	srv.Close()
	<-ended
	if !canceled.Load() {
		t.Fatal("handler's context not canceled by Close")
	}
}

// TestFallbackH2C: an h2c preface gets net/http's answer through httpd.
func TestFallbackH2C(t *testing.T) {
	s := startBoth(t, testHandler(), nil)
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	want := stripDate(readAll(t, s.std, preface))
	got := stripDate(readAll(t, s.fast, preface))
	if want == "" || got != want {
		t.Fatalf("httpd %q, net/http %q", got, want)
	}
}

// TestCurl: curl's own requests (Expect: 100-continue on a big upload,
// chunked upload) work through httpd.
func TestCurl(t *testing.T) {
	curl, err := lookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	addr := startFast(t, &Server{Handler: testHandler()})
	big := strings.Repeat("v", 2<<20)
	for _, args := range [][]string{
		{"-sS", "-X", "PUT", "-H", "Expect: 100-continue", "--data-binary", "@-", "http://" + addr + "/echo"},
		{"-sS", "-X", "PUT", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", "http://" + addr + "/echo"},
	} {
		out, err := runWithStdin(curl, args, big)
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		if !strings.Contains(out, `"contentLength":`) || !strings.Contains(out, big[:1000]) || len(out) < len(big) {
			t.Fatalf("curl %v: answer %.300q", args, out)
		}
	}
}

// TestPanicClosesQuietly: after a handler's panic the connection closes
// with no answer, and the server goes on serving.
func TestPanicClosesQuietly(t *testing.T) {
	addr := startFast(t, &Server{Handler: testHandler(), ErrorLog: discardLog()})
	for _, kind := range []string{"abort", "other"} {
		if b := readAll(t, addr, "GET /panic?kind="+kind+" HTTP/1.1\r\n"+host+"\r\n"); b != "" {
			t.Fatalf("panic %s: got %q, want nothing", kind, b)
		}
	}
	if out := exchange(t, addr, "GET /cl?n=2 HTTP/1.1\r\n"+host+"\r\n", "GET"); len(out) != 1 || !strings.HasSuffix(out[0], "xx") {
		t.Fatalf("after panics: %q", out)
	}
}

// wrapListener yields connections wrapped as pkg/connlimit does, with
// NetConn: httpd writes to the TCP connection under them.
type wrapListener struct{ net.Listener }

type wrappedConn struct {
	net.Conn
	closed *atomic.Int64
}

func (c *wrappedConn) NetConn() net.Conn { return c.Conn }
func (c *wrappedConn) Close() error      { c.closed.Add(1); return c.Conn.Close() }

var wrappedClosed atomic.Int64

func (l wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wrappedConn{Conn: c, closed: &wrappedClosed}, nil
}

// TestWrappedConn: through a wrapper the answers are the same, and the
// wrapper's Close is the one called.
func TestWrappedConn(t *testing.T) {
	srv := &Server{Handler: testHandler()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(wrapListener{ln})
	t.Cleanup(func() { srv.Close() })
	before := wrappedClosed.Load()
	out := exchange(t, ln.Addr().String(), "GET /cl?n=40000 HTTP/1.1\r\n"+host+"\r\nGET /nocl?n=5000 HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n", "GET", "GET")
	if len(out) != 2 || !strings.HasSuffix(out[0], strings.Repeat("x", 40000)) || !strings.HasSuffix(out[1], strings.Repeat("z", 5000)) {
		t.Fatalf("%.300q", out)
	}
	waitFor(t, "the wrapper's Close", func() bool { return wrappedClosed.Load() > before })
}

// TestTLS: over a tls.Listener the handshake is done on the connection's
// goroutine, r.TLS is set, and a plain HTTP request gets net/http's 400.
func TestTLS(t *testing.T) {
	borrowed := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate and client
	defer borrowed.Close()
	seen := make(chan bool, 10)
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.TLS != nil && r.TLS.HandshakeComplete
		w.Header().Set("Content-Length", "40000")
		w.Write(bytes.Repeat([]byte("s"), 40000))
	}), ReadHeaderTimeout: time.Minute, ErrorLog: discardLog()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(ln, borrowed.TLS))
	t.Cleanup(func() { srv.Close() })
	hc := borrowed.Client()
	for range 3 {
		resp, err := hc.Get("https://" + ln.Addr().String() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(b) != 40000 || resp.StatusCode != 200 {
			t.Fatalf("status %d, %d bytes, %v", resp.StatusCode, len(b), err)
		}
		if !<-seen {
			t.Fatal("handler saw no r.TLS")
		}
	}
	got := readAll(t, ln.Addr().String(), "GET / HTTP/1.1\r\n"+host+"\r\n")
	if !strings.HasPrefix(got, "HTTP/1.0 400 Bad Request") || !strings.Contains(got, "HTTP request to an HTTPS server") {
		t.Fatalf("plain HTTP to the TLS port: %q", got)
	}
}

// TestWaitingClientKept: the sweeper's peeks at a request that waits in its
// handler do not cancel it while its client is there, with nothing sent
// after the request or with a pipelined request waiting in the socket.
func TestWaitingClientKept(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		release := make(chan struct{})
		srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/block" {
				select {
				case <-release:
				case <-r.Context().Done():
					io.WriteString(w, "canceled")
					return
				}
			}
			io.WriteString(w, r.URL.Path)
		})}
		addr := startFast(t, srv)
		c := dial(t, addr)
		req := "GET /block HTTP/1.1\r\n" + host + "\r\n"
		want := []string{"GET"}
		if pipelined {
			req += "GET /second HTTP/1.1\r\n" + host + "\r\n"
			want = append(want, "GET")
		}
		io.WriteString(c, req)
		waitFor(t, "two peeks at the waiting request", func() bool { return srv.aliveChecks.Load() >= 2 })
		close(release)
		out := readResponses(t, c, bufio.NewReader(c), want...)
		if !strings.HasSuffix(out[0], "\n/block") {
			t.Fatalf("pipelined=%v: first answer %q, want /block (not canceled)", pipelined, out[0])
		}
		if pipelined && !strings.HasSuffix(out[1], "\n/second") {
			t.Fatalf("second answer %q", out[1])
		}
	}
}
