package httpd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testHandler is the handler both servers serve in the comparisons.
func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/cl", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		body := bytes.Repeat([]byte("x"), n)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Header().Set("X-Consul-Index", "42")
		w.Write(body)
	})
	mux.HandleFunc("/cl-pieces", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "9000")
		for range 9 {
			w.Write(bytes.Repeat([]byte("y"), 1000))
		}
	})
	mux.HandleFunc("/nocl", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "text/plain")
		for i := 0; i < n; i += 100 {
			w.Write(bytes.Repeat([]byte("z"), min(100, n-i)))
		}
	})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html><body>hello</body></html>")
	})
	mux.HandleFunc("/early-hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "after hints")
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.Header().Set("Etag", `"abc"`)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		w.Write([]byte("body of status " + strconv.Itoa(code)))
	})
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such thing", http.StatusNotFound)
	})
	mux.HandleFunc("/v1/kv/", echo)
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/noread", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "did not read")
	})
	mux.HandleFunc("/maxbytes", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 10)
		if _, err := io.ReadAll(r.Body); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, "too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "fits")
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("kind") == "abort" {
			panic(http.ErrAbortHandler)
		}
		panic("boom")
	})
	mux.HandleFunc("/multi", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-B", "2")
		w.Header().Add("X-A", "1")
		w.Header().Add("X-A", "0")
		w.Header().Set("X-Nl", "a\r\nb")
		w.Header().Set("Content-Length", "bogus")
		io.WriteString(w, "multi")
	})
	return mux
}

// echo answers what the handler saw of the request.
func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := r.Header.Clone()
	out, _ := json.Marshal(map[string]any{
		"method": r.Method, "path": r.URL.Path, "rawPath": r.URL.RawPath, "rawQuery": r.URL.RawQuery,
		"query": r.URL.Query(), "requestURI": r.RequestURI, "proto": r.Proto, "host": r.Host,
		"header": h, "body": string(b), "contentLength": r.ContentLength, "close": r.Close,
		"transferEncoding": r.TransferEncoding,
	})
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// servers are the same handler behind httpd and behind net/http.
type servers struct {
	fast, std         string // addresses
	fastSrv           *Server
	stdSrv            *http.Server
	fastLog, stdLog   *syncBuf
	fastDone, stdDone chan error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startBoth(t *testing.T, h http.Handler, tune func(*Server, *http.Server)) *servers {
	t.Helper()
	s := &servers{fastLog: &syncBuf{}, stdLog: &syncBuf{}, fastDone: make(chan error, 1), stdDone: make(chan error, 1)}
	s.fastSrv = &Server{Handler: h, ErrorLog: log.New(s.fastLog, "", 0), ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}
	s.stdSrv = &http.Server{Handler: h, ErrorLog: log.New(s.stdLog, "", 0), ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}
	if tune != nil {
		tune(s.fastSrv, s.stdSrv)
	}
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.fast, s.std = ln1.Addr().String(), ln2.Addr().String()
	go func() { s.fastDone <- s.fastSrv.Serve(ln1) }()
	go func() { s.stdDone <- s.stdSrv.Serve(ln2) }()
	t.Cleanup(func() {
		s.fastSrv.Close()
		s.stdSrv.Close()
		if err := <-s.fastDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("httpd Serve returned %v, want http.ErrServerClosed", err)
		}
		<-s.stdDone
	})
	return s
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	t.Cleanup(func() { c.Close() })
	return c
}

// readResponses reads the responses to the requests of methods, in order,
// and describes each (status, headers less Date, framing, body); then, if
// the last says it closes, it checks the server closed the connection.
func readResponses(t *testing.T, c net.Conn, br *bufio.Reader, methods ...string) []string {
	t.Helper()
	var out []string
	for _, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			out = append(out, "read error: "+errKind(err))
			return out
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := describe(resp, body)
		if err != nil {
			d += "\nbody error: " + errKind(err)
		}
		out = append(out, d)
		if resp.Close {
			if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
				out = append(out, "connection left open after Connection: close")
			}
			return out
		}
	}
	return out
}

func errKind(err error) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, net.ErrClosed), strings.Contains(err.Error(), "connection reset"):
		return "closed"
	}
	return err.Error()
}

func describe(resp *http.Response, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", resp.Proto, resp.Status)
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		if k != "Date" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %q\n", k, resp.Header[k])
	}
	_, date := resp.Header["Date"]
	fmt.Fprintf(&b, "date=%v te=%v cl=%d close=%v\n%s", date, resp.TransferEncoding, resp.ContentLength, resp.Close, body)
	return b.String()
}

// exchange sends raw on a new connection to addr and reads the responses.
func exchange(t *testing.T, addr, raw string, methods ...string) []string {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return readResponses(t, c, bufio.NewReader(c), methods...)
}

// readAll reads what the server sends until it closes the connection.
func readAll(t *testing.T, addr, raw string) string {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// stripDate removes the Date header line of raw responses.
func stripDate(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\r\n") {
		if !strings.HasPrefix(l, "Date: ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n")
}

// waitFor polls cond with a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }

func runWithStdin(name string, args []string, stdin string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
