package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Request logs: at Info a line for each failed request (Warn for a 5xx),
// nothing for one that succeeded; at Debug a line for every request. A 404
// from the KV endpoint is an answer ("no such key"), not a failure.

// statusRecorder remembers the status an HTTP handler answered with, and
// the error writeError turned into it.
type statusRecorder struct {
	http.ResponseWriter
	status int
	err    error
	gzip   bool // the client accepts gzip (http_gzip.go)
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (the forwarding proxy's flushes) reach
// the connection's writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		if r.status == 0 {
			r.status = http.StatusOK
		}
		f.Flush()
	}
}

func (s *Server) logRequests(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, gzip: acceptsGzip(r)}
		defer func() { s.logRequest(r, rec, time.Since(start)) }() // a panic too (http_harden.go)
		s.serveRecovered(next, rec, r)
	})
}

func (s *Server) logRequest(r *http.Request, rec *statusRecorder, took time.Duration) {
	ctx := context.Background()
	level := slog.LevelDebug
	failed := rec.status >= 400 && !(rec.status == http.StatusNotFound && strings.HasPrefix(r.URL.Path, "/v1/kv/"))
	switch {
	case rec.status == 0: // the client went away before an answer: debug only
	case failed && rec.status >= 500:
		level = slog.LevelWarn
	case failed:
		level = slog.LevelInfo
	}
	if !s.logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rec.status),
		slog.Duration("duration", took),
		slog.String("remote", r.RemoteAddr),
	}
	if q := redactQuery(r.URL.RawQuery); q != "" {
		attrs = append(attrs, slog.String("query", q))
	}
	if by := r.Header.Get(headerForwarded); by != "" {
		attrs = append(attrs, slog.String("forwarded_by", by))
	}
	if rec.err != nil {
		attrs = append(attrs, slog.String("err", rec.err.Error()))
	}
	msg := "http request"
	if failed {
		msg = "http request failed"
	}
	s.logger.LogAttrs(ctx, level, msg, attrs...)
}

// redactQuery hides an ACL token given as ?token=.
func redactQuery(raw string) string {
	if !strings.Contains(raw, "token") {
		return raw
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "(unparsable)"
	}
	if _, ok := q["token"]; ok {
		q.Set("token", "redacted")
	}
	return q.Encode()
}
