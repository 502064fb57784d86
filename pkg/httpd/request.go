package httpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// errHeaderTooLarge: the request line and headers passed the server's limit.
var errHeaderTooLarge = errors.New("httpd: request header too large")

// readHeaderBlock reads the request line and headers, up to and including
// the empty line that ends them, into dst. It stops with errHeaderTooLarge
// past limit bytes (dst then holds what was read).
func readHeaderBlock(br *bufio.Reader, dst []byte, limit int) ([]byte, error) {
	lineStart := true
	for {
		line, err := br.ReadSlice('\n')
		dst = append(dst, line...)
		if len(dst) > limit {
			return dst, errHeaderTooLarge
		}
		if err == bufio.ErrBufferFull {
			lineStart = false
			continue
		}
		if err != nil {
			return dst, err
		}
		if lineStart && (len(line) == 2 && line[0] == '\r' || len(line) == 1) {
			return dst, nil
		}
		lineStart = true
	}
}

// parsed is a request the fast loop serves, with the facts the response
// needs.
type parsed struct {
	req              http.Request
	wantsClose       bool
	wants10KeepAlive bool
}

// commonHeaders interns the canonical keys most requests carry.
var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Host", "If-Modified-Since", "If-None-Match",
		"Pragma", "Referer", "User-Agent", "X-Consul-Token", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "X-Kvx-Forwarded", "Traceparent", "Origin"} {
		m[k] = k
	}
	return m
}()

var commonMethods = map[string]string{"GET": "GET", "PUT": "PUT", "POST": "POST", "DELETE": "DELETE", "HEAD": "HEAD", "OPTIONS": "OPTIONS", "PATCH": "PATCH"}

// parseRequest parses a header block read by readHeaderBlock. It returns
// ok false for anything the fast loop leaves to net/http: malformed or
// unusual requests (net/http then gives its own answer), bodies that are
// not a plain Content-Length, Expect, Upgrade, HTTP versions other than
// 1.0 and 1.1, absolute or non-path request targets. The header keys in
// block are canonicalized in place.
func parseRequest(block []byte) (p parsed, ok bool) {
	// Lines end in CRLF only; anything else goes to net/http.
	eol := bytes.Index(block, crlf)
	if eol <= 0 {
		return p, false
	}
	// Count the header lines to size the map and the values.
	n := bytes.Count(block, crlf) - 2
	if n < 0 || !bytes.HasSuffix(block, crlfcrlf) {
		return p, false
	}
	for i := 0; i < len(block); i++ { // no bare LF or CR
		switch block[i] {
		case '\n':
			if i == 0 || block[i-1] != '\r' {
				return p, false
			}
		case '\r':
			if i+1 >= len(block) || block[i+1] != '\n' {
				return p, false
			}
		}
	}
	// Canonicalize the keys in place, then make one string of the block:
	// every string of the request is a piece of it.
	for rest := block[eol+2:]; len(rest) > 2; {
		end := bytes.Index(rest, crlf)
		line := rest[:end]
		rest = rest[end+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return p, false
		}
		if !canonicalize(line[:colon]) {
			return p, false
		}
	}
	s := string(block)

	line := s[:eol]
	method, rest, ok1 := strings.Cut(line, " ")
	uri, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || method == "CONNECT" || method == "PRI" || uri == "" || uri[0] != '/' {
		return p, false
	}
	for i := 0; i < len(method); i++ {
		if !httpguts.IsTokenRune(rune(method[i])) {
			return p, false
		}
	}
	if m, ok := commonMethods[method]; ok {
		method = m
	}
	req := &p.req
	*req = http.Request{Method: method, RequestURI: uri, Proto: proto, ProtoMajor: 1}
	switch proto {
	case "HTTP/1.1":
		req.Proto, req.ProtoMinor = "HTTP/1.1", 1
	case "HTTP/1.0":
		req.Proto = "HTTP/1.0"
	default:
		return p, false
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return p, false
	}
	req.URL = u

	h := make(http.Header, n)
	vals := make([]string, n)
	vi := 0
	for rest := s[eol+2:]; len(rest) > 2; {
		end := strings.Index(rest, "\r\n")
		line := rest[:end]
		rest = rest[end+2:]
		colon := strings.IndexByte(line, ':')
		key := line[:colon]
		if k, ok := commonHeaders[key]; ok {
			key = k
		}
		v := strings.TrimRight(strings.TrimLeft(line[colon+1:], " \t"), " \t")
		if !httpguts.ValidHeaderFieldValue(v) {
			return p, false
		}
		if old, ok := h[key]; ok {
			h[key] = append(old, v)
		} else {
			vals[vi] = v
			h[key] = vals[vi : vi+1 : vi+1]
			vi++
		}
	}
	req.Header = h

	// What net/http refuses, or does something special with, is its to do.
	if _, ok := h["Transfer-Encoding"]; ok {
		return p, false
	}
	if _, ok := h["Expect"]; ok {
		return p, false
	}
	if _, ok := h["Upgrade"]; ok {
		return p, false
	}
	hosts, haveHost := h["Host"]
	if len(hosts) > 1 || req.ProtoMinor == 1 && !haveHost || haveHost && !httpguts.ValidHostHeader(hosts[0]) {
		return p, false
	}
	if haveHost {
		req.Host = hosts[0]
		delete(h, "Host")
	}
	if cl, ok := h["Content-Length"]; ok {
		if len(cl) != 1 {
			return p, false
		}
		v, ok := parseContentLength(cl[0])
		if !ok {
			return p, false
		}
		req.ContentLength = v
	}
	if hp, ok := h["Pragma"]; ok && len(hp) > 0 && hp[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	conn := h["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conn, "close")
	if req.ProtoMinor == 0 {
		req.Close = hasClose || !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	} else {
		req.Close = hasClose
	}
	p.wantsClose = req.Close || hasToken(firstValue(conn), "close")
	p.wants10KeepAlive = req.ProtoMinor == 0 && hasToken(firstValue(conn), "keep-alive")
	return p, true
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

func firstValue(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// hasToken reports whether token is in the comma-separated v, as
// net/http's unexported hasToken.
func hasToken(v, token string) bool {
	return v != "" && httpguts.HeaderValuesContainsToken([]string{v}, token)
}

// canonicalize turns a header key into its canonical form in place
// (textproto.CanonicalMIMEHeaderKey), and reports false for a key with a
// byte that is not a token's.
func canonicalize(k []byte) bool {
	upper := true
	for i, c := range k {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		k[i] = c
		upper = c == '-'
	}
	return true
}

// parseContentLength accepts plain decimal digits only (at most 18 of them).
func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// body is a request body of a known length, read from the connection.
type body struct {
	mu        sync.Mutex
	br        *bufio.Reader
	remaining int64
	closed    bool // Close called, or the handler returned
	sawEOF    bool
	err       error // a read error: the connection cannot carry another request
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

func (b *body) readLocked(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.remaining <= 0 {
		b.sawEOF = true
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.br.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		b.sawEOF = true
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// discard reads what the handler left of the body, if it is at most max
// bytes; it reports whether the connection can carry another request.
func (b *body) discard(max int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return false
	}
	if b.remaining == 0 {
		return true
	}
	if b.remaining > max {
		return false
	}
	for b.remaining > 0 {
		n, err := b.br.Discard(int(min(b.remaining, 1<<20)))
		b.remaining -= int64(n)
		if err != nil {
			b.err = err
			return false
		}
	}
	return true
}

// unread is how many bytes of the body are left on the wire.
func (b *body) unread() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.remaining
}
