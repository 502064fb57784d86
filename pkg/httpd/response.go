package httpd

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

const (
	// bufSize: body bytes gathered before a write, when the length is known.
	bufSize = 4 << 10
	// bufferBeforeChunking: net/http's; a handler that wrote at most this
	// much without a Content-Length gets one computed, more goes chunked.
	bufferBeforeChunking = 2048
	// maxCopy: below it, a connection without writev (TLS) copies the head
	// and body into one write.
	maxCopy = 64 << 10
)

var errAfterHandler = errors.New("httpd: response used after its handler returned")

// response is the http.ResponseWriter of one request.
type response struct {
	c      *conn
	req    *http.Request
	body   *body // nil without a request body
	header http.Header

	status        int
	wroteHeader   bool // WriteHeader called (or implied)
	headSent      bool // the head is on the wire
	chunking      bool
	contentLength int64 // -1: unknown
	written       int64 // body bytes the handler wrote

	wantsClose, wants10KeepAlive, isHEAD bool

	closeAfter  bool // close the connection after this response
	lingerClose bool // and half-close first (unread request body)
	handlerDone bool // the handler returned: finish is writing the end
	badLength   bool // the handler set an invalid Content-Length
	done        bool // the response is over
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.done {
		return
	}
	if w.wroteHeader {
		w.c.s.logf("http: superfluous response.WriteHeader call (%s %s)", w.req.Method, w.req.URL.Path)
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := first(w.header, "Content-Length"); cl != "" {
		v, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && v >= 0 {
			w.contentLength = v
		} else {
			w.c.s.logf("http: invalid Content-Length of %q", cl)
			w.header.Del("Content-Length")
			w.badLength = true // net/http still counts it as set
		}
	}
}

func (w *response) writeInformational(code int) {
	c := w.c
	c.head = appendStatusLine(c.head[:0], w.req.ProtoMinor == 1, code)
	c.head = c.appendHeader(c.head, w.header, exclContentLength|exclTransferEncoding)
	c.head = append(c.head, "\r\n"...)
	c.write(c.head)
}

func (w *response) Write(p []byte) (int, error) {
	if w.done {
		return 0, errAfterHandler
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		w.closeAfter = true
		return 0, http.ErrContentLength
	}
	c := w.c
	if c.werr != nil {
		return 0, c.werr
	}
	if w.contentLength < 0 {
		return w.writeUnknown(p)
	}
	if !w.headSent {
		if w.written == w.contentLength || len(c.buf)+len(p) > bufSize {
			return w.sendHead(p, false) // the head, what was gathered and p in one write
		}
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if len(c.buf)+len(p) <= bufSize {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return w.writeBody(p, false)
}

// writeUnknown writes a body of unknown length as net/http's 2 kB
// bufio.Writer in front of its chunkWriter does, so the chunks are the
// same: a write into a non-empty buffer fills it and sends it as a chunk,
// a big write into an empty one goes out as one chunk.
func (w *response) writeUnknown(p []byte) (int, error) {
	c := w.c
	n := len(p)
	for len(p) > bufferBeforeChunking-len(c.buf) {
		var err error
		if len(c.buf) == 0 {
			err = w.flushGathered(p)
			p = nil
		} else {
			k := bufferBeforeChunking - len(c.buf)
			c.buf = append(c.buf, p[:k]...)
			p = p[k:]
			err = w.flushGathered(nil)
		}
		if err != nil {
			return 0, err
		}
	}
	c.buf = append(c.buf, p...)
	return n, nil
}

// flushGathered sends the gathered bytes and p: with the head the first
// time.
func (w *response) flushGathered(p []byte) error {
	var err error
	if !w.headSent {
		_, err = w.sendHead(p, false)
	} else {
		_, err = w.writeBody(p, false)
	}
	return err
}

// Flush sends the head and the body written so far.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports the connection's error
// (http.ResponseController).
func (w *response) FlushError() error {
	if w.done {
		return errAfterHandler
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		_, err := w.sendHead(nil, false)
		return err
	}
	if len(w.c.buf) > 0 {
		_, err := w.writeBody(nil, false)
		return err
	}
	return w.c.werr
}

// SetWriteDeadline is for http.ResponseController.
func (w *response) SetWriteDeadline(t time.Time) error {
	return w.c.rwc.SetWriteDeadline(t)
}

// finish ends the response once the handler returned.
func (w *response) finish() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.sendHead(nil, true)
	} else if len(w.c.buf) > 0 || w.chunking {
		w.writeBody(nil, true)
	}
	if !w.isHEAD && bodyAllowedForStatus(w.status) && w.contentLength != -1 && w.written != w.contentLength {
		w.closeAfter = true // the client cannot tell where this answer ends
	}
	if w.c.s.inShutdown.Load() {
		w.closeAfter = true
	}
}

// writeBody writes the gathered bytes and p (a chunk when chunking; the
// last chunk's terminator with last).
func (w *response) writeBody(p []byte, last bool) (int, error) {
	c := w.c
	vec := c.vec[:0]
	if w.isHEAD || !bodyAllowedForStatus(w.status) {
		c.buf = c.buf[:0]
		return len(p), nil
	}
	return w.sendBody(vec, p, last)
}

// sendBody writes vec (empty, or the response head), then the gathered
// bytes and p, in one write: as a chunk when chunking, with the last
// chunk's terminator when last.
func (w *response) sendBody(vec [][]byte, p []byte, last bool) (int, error) {
	c := w.c
	if w.chunking {
		if n := len(c.buf) + len(p); n > 0 {
			chunkHead := strconv.AppendInt(c.chunkHead[:0], int64(n), 16)
			chunkHead = append(chunkHead, "\r\n"...)
			vec = append(vec, chunkHead, c.buf, p, crlf)
		}
		if last {
			vec = append(vec, lastChunk)
		}
	} else {
		vec = append(vec, c.buf, p)
	}
	err := c.writeVec(vec)
	c.buf = c.buf[:0]
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

var lastChunk = []byte("0\r\n\r\n")

// Header exclusions of a head.
const (
	exclContentType = 1 << iota
	exclContentLength
	exclTransferEncoding
	exclConnection
)

// sendHead decides the head as net/http's chunkWriter.writeHeader does, and
// writes it with the gathered body bytes and p in one write.
func (w *response) sendHead(p []byte, final bool) (int, error) {
	c := w.c
	w.headSent = true
	keepAlives := !c.s.inShutdown.Load()
	h := w.header
	var excl int
	var setCT, setConn, setTE string
	var setCL bool

	te := first(h, "Transfer-Encoding")
	hasTE := te != ""
	code := w.status
	if final && !hasTE && bodyAllowedForStatus(code) && !has(h, "Content-Length") && !w.badLength && (!w.isHEAD || w.written > 0) {
		w.contentLength = w.written
		setCL = true
	}
	if w.wants10KeepAlive && keepAlives {
		if first(h, "Content-Length") != "" && first(h, "Connection") == "keep-alive" {
			w.closeAfter = false
		}
	}
	hasCL := w.contentLength != -1
	if w.wants10KeepAlive && (w.isHEAD || hasCL || !bodyAllowedForStatus(code)) {
		if _, ok := h["Connection"]; !ok {
			setConn = "keep-alive"
		}
	} else if w.req.ProtoMinor == 0 || w.wantsClose {
		w.closeAfter = true
	}
	if first(h, "Connection") == "close" || !keepAlives {
		w.closeAfter = true
	}
	if w.body != nil && !w.closeAfter {
		if unread := w.body.unread(); unread > 0 {
			if unread >= maxPostHandlerReadBytes || !w.body.discard(maxPostHandlerReadBytes) {
				w.closeAfter = true
				excl |= exclConnection
				setConn = "close"
			}
		}
	}
	if bodyAllowedForStatus(code) {
		_, haveType := h["Content-Type"]
		if !haveType && !hasTE && first(h, "Content-Encoding") == "" && len(c.buf)+len(p) > 0 {
			setCT = http.DetectContentType(sniffBytes(c.buf, p))
		}
	} else {
		if code == http.StatusNotModified {
			excl |= exclContentType
		}
		excl |= exclContentLength | exclTransferEncoding
	}
	if hasCL && hasTE && te != "identity" {
		c.s.logf("http: WriteHeader called with both Transfer-Encoding of %q and a Content-Length of %d", te, w.contentLength)
		excl |= exclContentLength
		hasCL = false
	}
	if w.isHEAD || !bodyAllowedForStatus(code) || code == http.StatusNoContent {
		excl |= exclTransferEncoding
	} else if hasCL {
		excl |= exclTransferEncoding
	} else if w.req.ProtoMinor == 1 {
		if hasTE && te == "identity" {
			w.closeAfter = true
			excl |= exclTransferEncoding
		} else {
			w.chunking = true
			setTE = "chunked"
			if hasTE && te == "chunked" {
				excl |= exclTransferEncoding
			}
		}
	} else {
		w.closeAfter = true
		excl |= exclTransferEncoding
	}
	if w.chunking {
		excl |= exclContentLength
	}
	switchingProtocols := code == http.StatusSwitchingProtocols && has(h, "Upgrade")
	if w.closeAfter && (!keepAlives || !hasToken(first(h, "Connection"), "close")) && !switchingProtocols {
		excl |= exclConnection
		if w.req.ProtoMinor == 1 {
			setConn = "close"
		}
	}

	head := appendStatusLine(c.head[:0], w.req.ProtoMinor == 1, code)
	head = c.appendHeader(head, h, excl)
	if !has(h, "Date") {
		head = append(head, "Date: "...)
		head = appendDate(head)
		head = append(head, "\r\n"...)
	}
	if setCL {
		head = append(head, "Content-Length: "...)
		head = strconv.AppendInt(head, w.contentLength, 10)
		head = append(head, "\r\n"...)
	}
	if setCT != "" {
		head = append(append(append(head, "Content-Type: "...), setCT...), "\r\n"...)
	}
	if setConn != "" {
		head = append(append(append(head, "Connection: "...), setConn...), "\r\n"...)
	}
	if setTE != "" {
		head = append(append(append(head, "Transfer-Encoding: "...), setTE...), "\r\n"...)
	}
	head = append(head, "\r\n"...)
	c.head = head

	if w.isHEAD || !bodyAllowedForStatus(code) {
		c.buf = c.buf[:0]
		if err := c.writeVec(append(c.vec[:0], head)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return w.sendBody(append(c.vec[:0], head), p, final)
}

func sniffBytes(buf, p []byte) []byte {
	const n = 512
	if len(buf) >= n || len(p) == 0 {
		return buf
	}
	if len(buf) == 0 {
		return p
	}
	out := make([]byte, 0, n)
	out = append(out, buf...)
	return append(out, p[:min(len(p), n-len(out))]...)
}

func appendStatusLine(b []byte, is11 bool, code int) []byte {
	if is11 {
		b = append(b, "HTTP/1.1 "...)
	} else {
		b = append(b, "HTTP/1.0 "...)
	}
	if text := http.StatusText(code); text != "" {
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, ' ')
		b = append(b, text...)
		return append(b, "\r\n"...)
	}
	return fmt.Appendf(b, "%03d status code %d\r\n", code, code)
}

// appendHeader appends h sorted by key, as http.Header.Write, less the
// excluded keys.
func (c *conn) appendHeader(b []byte, h http.Header, excl int) []byte {
	keys := c.keys[:0]
	for k := range h {
		switch {
		case excl&exclContentType != 0 && k == "Content-Type",
			excl&exclContentLength != 0 && k == "Content-Length",
			excl&exclTransferEncoding != 0 && k == "Transfer-Encoding",
			excl&exclConnection != 0 && k == "Connection":
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range h[k] {
			if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 { // ContainsAny, but vectorized: values can be kilobytes
				v = strings.NewReplacer("\n", " ", "\r", " ").Replace(v)
			}
			v = trimString(v)
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	clear(keys)
	c.keys = keys[:0]
	return b
}

// trimString is textproto.TrimString.
func trimString(s string) string {
	for len(s) > 0 && isASCIISpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isASCIISpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isASCIISpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

func first(h http.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func has(h http.Header, k string) bool {
	_, ok := h[k]
	return ok
}

// bodyAllowedForStatus is net/http's.
func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == 204:
		return false
	case status == 304:
		return false
	}
	return true
}

type dateEntry struct {
	sec int64
	b   []byte
}

var dateCache atomic.Pointer[dateEntry]

// appendDate appends the current time in http.TimeFormat, formatted once
// a second.
func appendDate(b []byte) []byte {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return append(b, d.b...)
	}
	d := &dateEntry{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	dateCache.Store(d)
	return append(b, d.b...)
}

// writeVec writes the buffers: in one writev when the connection can,
// else copied into one write when small.
func (c *conn) writeVec(vec [][]byte) error {
	if c.werr != nil {
		return c.werr
	}
	defer clear(c.vec[:])
	if c.raw != nil {
		c.werr = c.rw.writev(vec)
		return c.werr
	}
	if c.writev {
		c.bufs = vec
		_, c.werr = c.bufs.WriteTo(c.w)
		c.bufs = nil
		return c.werr
	}
	total := 0
	for _, b := range vec {
		total += len(b)
	}
	if total <= maxCopy {
		bp := copyPool.Get().(*[]byte)
		out := (*bp)[:0]
		for _, b := range vec {
			out = append(out, b...)
		}
		_, c.werr = c.w.Write(out)
		*bp = out[:0]
		copyPool.Put(bp)
		return c.werr
	}
	for _, b := range vec {
		if len(b) == 0 {
			continue
		}
		if _, c.werr = c.w.Write(b); c.werr != nil {
			return c.werr
		}
	}
	return nil
}

var copyPool = sync.Pool{New: func() any { b := make([]byte, 0, maxCopy); return &b }}

func (c *conn) write(b []byte) error { return c.writeVec(append(c.vec[:0], b)) }
