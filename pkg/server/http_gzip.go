package server

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	kgzip "github.com/klauspost/compress/gzip"
)

// Compressed answers. Consul gzips every answer for a client that accepts
// it (its HTTP handlers are wrapped in gziphandler), and Go's HTTP client,
// which consul/api, consul-template and Prometheus use, asks for gzip and
// inflates transparently. kvx does the same for bodies of gzipMinSize bytes
// and more: a shared answer (answerCache) is compressed once, at its
// first request that accepts gzip, and that copy is written to every
// other; any other body is compressed as it is written, at gzip's fastest
// level. A body that does not shrink (already compressed data) is sent as
// it is. Either way the answer says Vary: Accept-Encoding.
const gzipMinSize = 1024

// acceptsGzip reports whether a request's Accept-Encoding lists gzip (or
// *) without q=0.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header["Accept-Encoding"] {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if coding = strings.TrimSpace(coding); coding != "gzip" && coding != "*" {
				continue
			}
			if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

var (
	headerVary = []string{"Accept-Encoding"}
	headerGzip = []string{"gzip"}
)

// encoded is an answer body and, once asked for, its gzip form.
type encoded struct {
	body []byte
	once sync.Once
	gz   []byte // nil: not worth sending compressed
}

func (e *encoded) gzipped(level int) []byte {
	e.once.Do(func() { e.gz = compress(e.body, level) })
	return e.gz
}

// compress returns b gzipped, or nil when that does not save a tenth.
//
// An answer compressed for one request (gzip.BestSpeed) uses klauspost's
// stateless deflate: no compressor to set up (compress/gzip's costs 1.2 MB
// and ~300 µs to create, and a sync.Pool loses it at every collection), a
// few kilobytes per call, ~5% larger output. A shared answer, compressed
// once for every waiter (any other level), gets compress/gzip's default
// level from defaultGzip, a writer kept across collections.
func compress(b []byte, level int) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	if level == gzip.BestSpeed {
		zw, _ := kgzip.NewWriterLevel(&buf, kgzip.StatelessCompression)
		_, _ = zw.Write(b)
		_ = zw.Close()
	} else {
		zw := defaultGzip.Swap(nil)
		if zw == nil {
			zw, _ = gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		} else {
			zw.Reset(&buf)
		}
		_, _ = zw.Write(b)
		_ = zw.Close()
		zw.Reset(io.Discard) // drop buf
		defaultGzip.Store(zw)
	}
	if buf.Len() > len(b)-len(b)/10 {
		return nil
	}
	return buf.Bytes()
}

// defaultGzip holds one idle default-level writer (800 kB of tables); two
// shared answers compressed at the same moment make a second, dropped after.
var defaultGzip atomic.Pointer[gzip.Writer]

// writeEncoded answers with e, compressed when the client accepts it.
func writeEncoded(w http.ResponseWriter, code int, e *encoded, level int) {
	h := w.Header()
	if len(e.body) >= gzipMinSize {
		h["Vary"] = headerVary
		if rec, ok := w.(*statusRecorder); ok && rec.gzip {
			if gz := e.gzipped(level); gz != nil {
				h["Content-Encoding"] = headerGzip
				h["Content-Length"] = []string{strconv.Itoa(len(gz))}
				w.WriteHeader(code)
				_, _ = w.Write(gz)
				return
			}
		}
	}
	h["Content-Length"] = []string{strconv.Itoa(len(e.body))}
	w.WriteHeader(code)
	_, _ = w.Write(e.body)
}
