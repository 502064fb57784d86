package httpd

import (
	"bufio"
	"bytes"
	"maps"
	"net/http"
	"slices"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// FuzzReadRequest: any bytes are read and parsed without a panic, and a
// request the fast parser takes is one net/http takes too, seen the same.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET /v1/kv/a%2Fb?index=3&wait=10m HTTP/1.1\r\nHost: x\r\nX-Consul-Token: t\r\n\r\n",
		"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: a\r\nx-a:  1 \r\nX-A:2\r\nPragma: no-cache\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		block, err := readHeaderBlock(bufio.NewReaderSize(bytes.NewReader(in), 64), nil, 1<<16)
		if err != nil {
			return
		}
		p, ok := parseRequest(bytes.Clone(block))
		if !ok {
			return // net/http's to answer
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("fast parser took %q, net/http refuses it: %v", in, err)
		}
		// net/http's server refuses more than ReadRequest does (which
		// moved Host out of the headers).
		if want.ProtoAtLeast(1, 1) && want.Host == "" && !bytes.Contains(bytes.ToLower(in), []byte("\nhost:")) || !httpguts.ValidHostHeader(want.Host) {
			t.Fatalf("fast parser took %q, net/http's server refuses its Host", in)
		}
		for k, vv := range want.Header {
			if !httpguts.ValidHeaderFieldName(k) {
				t.Fatalf("fast parser took %q, net/http's server refuses header name %q", in, k)
			}
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("fast parser took %q, net/http's server refuses header value %q", in, v)
				}
			}
		}
		got := &p.req
		if got.Method != want.Method || got.URL.String() != want.URL.String() || got.RequestURI != want.RequestURI ||
			got.Proto != want.Proto || got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
			got.Host != want.Host || got.ContentLength != want.ContentLength || got.Close != want.Close {
			t.Fatalf("%q: fast parser %s %s %s host=%q cl=%d close=%v; net/http %s %s %s host=%q cl=%d close=%v", in,
				got.Method, got.URL, got.Proto, got.Host, got.ContentLength, got.Close,
				want.Method, want.URL, want.Proto, want.Host, want.ContentLength, want.Close)
		}
		if !maps.EqualFunc(got.Header, want.Header, slices.Equal) {
			t.Fatalf("%q: fast parser headers %q, net/http %q", in, got.Header, want.Header)
		}
	})
}
