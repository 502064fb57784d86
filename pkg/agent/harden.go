package agent

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
)

// maxRequestBody caps every request body the agent's API reads or
// forwards (a server caps each endpoint lower).
const maxRequestBody = 4 << 20

// harden caps request bodies and turns a panic in a handler into a logged
// 500 (no detail for the client). No read or write timeout: a blocking
// query holds its connection for minutes.
func (a *Agent) harden(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pw := &panicWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(p)
			}
			a.log.Error("panic serving a request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if pw.wrote {
				panic(http.ErrAbortHandler)
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("internal error"))
		}()
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		}
		next.ServeHTTP(pw, r)
	})
}

// panicWriter remembers whether an answer has begun.
type panicWriter struct {
	http.ResponseWriter
	wrote bool
}

func (p *panicWriter) WriteHeader(code int) { p.wrote = true; p.ResponseWriter.WriteHeader(code) }
func (p *panicWriter) Write(b []byte) (int, error) {
	p.wrote = true
	return p.ResponseWriter.Write(b)
}
func (p *panicWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
func (p *panicWriter) Flush() {
	if f, ok := p.ResponseWriter.(http.Flusher); ok {
		p.wrote = true
		f.Flush()
	}
}
