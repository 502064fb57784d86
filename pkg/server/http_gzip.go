package server

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

var gzipWriters [2]sync.Pool // by level: fastest, default

// compress returns b gzipped, or nil when that does not save a tenth.
func compress(b []byte, level int) []byte {
	slot := 0
	if level != gzip.BestSpeed {
		slot, level = 1, gzip.DefaultCompression
	}
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	zw, _ := gzipWriters[slot].Get().(*gzip.Writer)
	if zw == nil {
		zw, _ = gzip.NewWriterLevel(&buf, level)
	} else {
		zw.Reset(&buf)
	}
	_, _ = zw.Write(b)
	_ = zw.Close()
	gzipWriters[slot].Put(zw)
	if buf.Len() > len(b)-len(b)/10 {
		return nil
	}
	return buf.Bytes()
}

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
