package httpd

import (
	"bufio"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

const host = "Host: kvx.test\r\n"

// TestSameAsNetHTTP sends the same bytes to the handler behind httpd and
// behind net/http, and wants the same answers.
func TestSameAsNetHTTP(t *testing.T) {
	s := startBoth(t, testHandler(), nil)
	big := strings.Repeat("b", 300<<10)
	cases := []struct {
		name    string
		raw     string
		methods []string
	}{
		{"get with content-length", "GET /cl?n=40000 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"get small content-length", "GET /cl?n=10 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"content-length in pieces", "GET /cl-pieces HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"no content-length small", "GET /nocl?n=1000 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"no content-length at the limit", "GET /nocl?n=2048 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"no content-length big: chunked", "GET /nocl?n=20000 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"sniffed type", "GET /sniff HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"empty", "GET /empty HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"head", "HEAD /cl?n=40000 HTTP/1.1\r\n" + host + "\r\n", []string{"HEAD"}},
		{"head no content-length", "HEAD /nocl?n=1000 HTTP/1.1\r\n" + host + "\r\n", []string{"HEAD"}},
		{"head empty", "HEAD /empty HTTP/1.1\r\n" + host + "\r\n", []string{"HEAD"}},
		{"204", "GET /status?code=204 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"304", "GET /status?code=304 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"500", "GET /status?code=500 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"unknown status", "GET /status?code=599 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"http.Error 404", "GET /error HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"mux 404", "GET /nothing HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"mux redirect", "GET /v1/kv HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"headers sorted, multiple, newline, bad length", "GET /multi HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"query with escapes", "GET /echo?recurse=&index=12&wait=10s&sep=%2F&x=a+b%20c HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"key with %2F and space", "GET /v1/kv/a%2Fb/c%20d?raw HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"request headers", "GET /echo HTTP/1.1\r\n" + host + "x-consul-token: abc\r\naccept-encoding: gzip\r\nX-Multi: 1\r\nx-multi: 2\r\nPragma: no-cache\r\nX-Space:   padded \t \r\nX-Empty:\r\n\r\n", []string{"GET"}},
		{"put with body", "PUT /v1/kv/k?cas=0 HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Type: application/octet-stream\r\n\r\nhello", []string{"PUT"}},
		{"post with body", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\n{}", []string{"POST"}},
		{"delete", "DELETE /v1/kv/k?recurse HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", []string{"DELETE"}},
		{"keep-alive reuse", strings.Repeat("GET /cl?n=100 HTTP/1.1\r\n"+host+"\r\n", 20), slices.Repeat([]string{"GET"}, 20)},
		{"pipelined get then put then get", "GET /cl?n=3 HTTP/1.1\r\n" + host + "\r\nPUT /echo HTTP/1.1\r\n" + host + "Content-Length: 3\r\n\r\nabcGET /echo?x=1 HTTP/1.1\r\n" + host + "\r\n", []string{"GET", "PUT", "GET"}},
		{"connection close from client", "GET /cl?n=10 HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n", []string{"GET"}},
		{"connection close from handler", "GET /close HTTP/1.1\r\n" + host + "\r\nGET /cl?n=1 HTTP/1.1\r\n" + host + "\r\n", []string{"GET", "GET"}},
		{"http/1.0", "GET /cl?n=10 HTTP/1.0\r\n\r\n", []string{"GET"}},
		{"http/1.0 no length", "GET /nocl?n=5000 HTTP/1.0\r\n\r\n", []string{"GET"}},
		{"http/1.0 keep-alive", "GET /cl?n=10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /nocl?n=10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", []string{"GET", "GET"}},
		{"body not read, small", "POST /noread HTTP/1.1\r\n" + host + "Content-Length: 10\r\n\r\n0123456789GET /cl?n=2 HTTP/1.1\r\n" + host + "\r\n", []string{"POST", "GET"}},
		{"body not read, big", "POST /noread HTTP/1.1\r\n" + host + "Content-Length: 307200\r\n\r\n" + big, []string{"POST"}},
		{"maxbytes within", "PUT /maxbytes HTTP/1.1\r\n" + host + "Content-Length: 4\r\n\r\nabcd", []string{"PUT"}},
		{"panic abort", "GET /panic?kind=abort HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"panic", "GET /panic HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		// What the fast loop hands to net/http: the answers are its own.
		{"malformed request line", "GARBAGE\r\n\r\n", []string{"GET"}},
		{"bad method", "G(T / HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"bad version", "GET / HTTP/1.2x\r\n" + host + "\r\n", []string{"GET"}},
		{"missing host", "GET /cl?n=1 HTTP/1.1\r\n\r\n", []string{"GET"}},
		{"two hosts", "GET /cl?n=1 HTTP/1.1\r\n" + host + host + "\r\n", []string{"GET"}},
		{"bad header", "GET /cl?n=1 HTTP/1.1\r\n" + host + "Bad Key: x\r\n\r\n", []string{"GET"}},
		{"oversized headers", "GET /cl?n=1 HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 1<<20+8192) + "\r\n\r\n", []string{"GET"}},
		{"chunked request body", "PUT /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", []string{"PUT"}},
		{"chunked then keep-alive", "PUT /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /cl?n=2 HTTP/1.1\r\n" + host + "\r\n", []string{"PUT", "GET"}},
		{"expect other", "PUT /echo HTTP/1.1\r\n" + host + "Expect: something\r\nContent-Length: 1\r\n\r\nx", []string{"PUT"}},
		{"second request falls back", "GET /cl?n=2 HTTP/1.1\r\n" + host + "\r\nPUT /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n", []string{"GET", "PUT"}},
		{"bare LF lines", "GET /cl?n=1 HTTP/1.1\n" + host[:len(host)-2] + "\n\n", []string{"GET"}},
		{"absolute form", "GET http://kvx.test/echo?a=1 HTTP/1.1\r\n" + host + "\r\n", []string{"GET"}},
		{"options star", "OPTIONS * HTTP/1.1\r\n" + host + "\r\n", []string{"OPTIONS"}},
		{"upgrade", "GET /echo HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n", []string{"GET"}},
		{"conflicting content-length", "PUT /echo HTTP/1.1\r\n" + host + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", []string{"PUT"}},
		{"bad content-length", "PUT /echo HTTP/1.1\r\n" + host + "Content-Length: x\r\n\r\nab", []string{"PUT"}},
	}
	fallbackFrom := slices.IndexFunc(cases, func(c struct {
		name    string
		raw     string
		methods []string
	}) bool {
		return c.name == "malformed request line"
	})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.fastSrv.handedOver.Load()
			want := exchange(t, s.std, tc.raw, tc.methods...)
			got := exchange(t, s.fast, tc.raw, tc.methods...)
			if len(want) == 0 {
				t.Fatal("net/http gave nothing")
			}
			if !slices.Equal(got, want) {
				t.Errorf("httpd answered\n%s\n\nnet/http answered\n%s", strings.Join(got, "\n---\n"), strings.Join(want, "\n---\n"))
			}
			if handed := s.fastSrv.handedOver.Load() > before; handed != (i >= fallbackFrom) {
				t.Errorf("handed over to net/http: %v, want %v", handed, i >= fallbackFrom)
			}
		})
	}
	// The panics were logged by both (the abort by neither).
	for name, log := range map[string]string{"httpd": s.fastLog.String(), "net/http": s.stdLog.String()} {
		if !strings.Contains(log, "panic serving") || !strings.Contains(log, "boom") || strings.Contains(log, "abort") {
			t.Errorf("%s's log: want the panic boom logged, not the abort:\n%s", name, log)
		}
	}
}

// TestSameBytes compares the raw bytes (less Date) of answers that end
// with the connection.
func TestSameBytes(t *testing.T) {
	s := startBoth(t, testHandler(), nil)
	for _, raw := range []string{
		"GET /cl?n=100 HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n",
		"GET /nocl?n=5000 HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n",
		"GET /nocl?n=50 HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n",
		"GET /multi HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n",
		"GET /status?code=304 HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n",
		"HEAD /sniff HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n",
		"GET /sniff HTTP/1.0\r\n\r\n",
		"GET /early-hints HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n",
		"GET /error HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /close HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GARBAGE\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/0.9\r\n\r\n",
		"GET /cl?n=1 HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 1<<20+8192) + "\r\n\r\n",
	} {
		want := stripDate(readAll(t, s.std, raw))
		got := stripDate(readAll(t, s.fast, raw))
		if want == "" || got != want {
			t.Errorf("request %.60q:\nhttpd sent\n%q\nnet/http sent\n%q", raw, got, want)
		}
	}
}

// TestClientThroughBoth: net/http's client (as consul/api uses it) sees the
// same through both, on reused connections.
func TestClientThroughBoth(t *testing.T) {
	s := startBoth(t, testHandler(), nil)
	paths := []string{"/cl?n=30000", "/nocl?n=9000", "/v1/kv/a%2Fb/c%20d?recurse=&index=3", "/status?code=304", "/error"}
	get := func(addr, method, path, body string) string {
		req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body == "" {
			req.Body = nil
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(describe(resp, b), addr, "ADDR")
	}
	for i := 0; i < 3; i++ {
		for _, p := range paths {
			if got, want := get(s.fast, "GET", p, ""), get(s.std, "GET", p, ""); got != want {
				t.Errorf("GET %s: httpd\n%s\nnet/http\n%s", p, got, want)
			}
		}
		if got, want := get(s.fast, "PUT", "/v1/kv/x?flags=3", "value"), get(s.std, "PUT", "/v1/kv/x?flags=3", "value"); got != want {
			t.Errorf("PUT: httpd\n%s\nnet/http\n%s", got, want)
		}
	}
}

// TestExpectContinue: a client that waits for 100 Continue before its body
// (curl's way) gets it, from net/http, then the answer.
func TestExpectContinue(t *testing.T) {
	s := startBoth(t, testHandler(), nil)
	for _, addr := range []string{s.fast, s.std} {
		c := dial(t, addr)
		io.WriteString(c, "PUT /echo HTTP/1.1\r\n"+host+"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("%s: first line %q, %v; want 100 Continue", addr, line, err)
		}
		if l, _ := br.ReadString('\n'); l != "\r\n" {
			t.Fatalf("%s: after 100 Continue: %q", addr, l)
		}
		io.WriteString(c, "hello")
		got := readResponses(t, c, br, "PUT")
		if len(got) != 1 || !strings.Contains(got[0], `"body":"hello"`) {
			t.Errorf("%s: %v", addr, got)
		}
		// and the connection carries another request
		io.WriteString(c, "GET /cl?n=3 HTTP/1.1\r\n"+host+"\r\n")
		if got := readResponses(t, c, br, "GET"); len(got) != 1 || !strings.HasSuffix(got[0], "xxx") {
			t.Errorf("%s: after the 100-continue exchange: %v", addr, got)
		}
	}
}
