package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/kvxproject/kvx/pkg/httpd"
)

// Hardening of the HTTP servers (API, HTTPS API, and the Raft port's
// internal one): a request's headers must arrive within
// httpReadHeaderTimeout and an idle keep-alive connection is closed after
// httpIdleTimeout. There is no read or write timeout on the whole request:
// a blocking query legitimately holds its connection for up to ten minutes
// (plus jitter) before it answers. Connections per client IP are capped
// (connlimit, -http-max-conns-per-client), every request body is capped at
// maxRequestBody (the endpoints cap theirs lower: 512 KiB for a KV value
// or a transaction, as Consul), and a panic in a handler is recovered,
// logged with its stack, and answered 500 without its message. The servers
// are pkg/httpd's (net/http's semantics, a lower cost per exchange for a
// fleet of waiting keep-alive connections; it hands anything unusual to
// net/http).
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpIdleTimeout       = 2 * time.Minute
	maxRequestBody        = 4 << 20
)

func (s *Server) newHTTPServer(h http.Handler) *httpd.Server {
	return &httpd.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
}

// limitBodies caps every request body at maxRequestBody.
func limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		}
		next.ServeHTTP(w, r)
	})
}

// serveRecovered runs a handler with its body capped, and turns a panic
// into a logged 500.
func (s *Server) serveRecovered(next http.HandlerFunc, rec *statusRecorder, r *http.Request) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
			panic(p) // net/http's way to cut a response short (the forwarding proxy)
		}
		s.logger.Error("panic serving a request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
			"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		rec.err = fmt.Errorf("panic: %v", p)
		if rec.status != 0 {
			panic(http.ErrAbortHandler) // the answer has begun: cut the connection
		}
		rec.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rec.WriteHeader(http.StatusInternalServerError)
		_, _ = rec.Write([]byte("internal error"))
	}()
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(rec, r.Body, maxRequestBody)
	}
	next(rec, r)
}
