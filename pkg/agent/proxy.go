package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"time"
)

// maxRetryBody is the largest request body kept in memory so that the
// request can be sent to another server; a larger one is sent once.
const maxRetryBody = 1 << 20

// dialError marks a request that never left: its connection failed.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// newProxy forwards a request to the servers, streaming the answer (a
// blocking query's too) with every header, and moving on to the next
// server as the package doc says.
func (a *Agent) newProxy() http.Handler {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	base := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     a.srv.proxyTLS,
	}
	if a.tls != nil {
		dialTLS := a.tls.DialTLS(a.opts.TLS.ServerName)
		base.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialTLS(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		}
	}
	a.closers = append(a.closers, base.CloseIdleConnections)
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			cur := a.srv.cur.Load()
			pr.Out.URL.Scheme = a.srv.schemes[cur]
			pr.Out.URL.Host = a.srv.hosts[cur]
			pr.Out.Host = ""
			pr.SetXForwarded()
			// The answers that depend on "the agent's node" (a session's default
			// Node, the events it lists) are this node's, as with Consul.
			pr.Out.Header.Set("X-Kvx-Node", a.opts.NodeName)
		},
		Transport:     &failover{a: a, base: base},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			a.log.Warn("forward to a server", "path", r.URL.Path, "err", err)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "kvx agent: no server answered: "+err.Error())
		},
	}
}

// failover sends a request to the servers in turn.
type failover struct {
	a    *Agent
	base *http.Transport
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	replayable := req.Body == nil || req.Body == http.NoBody
	if !replayable && req.ContentLength >= 0 && req.ContentLength <= maxRetryBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body, replayable = b, true
	}
	idempotent := req.Method == http.MethodGet || req.Method == http.MethodHead
	srv := f.a.srv
	start := int(srv.cur.Load())
	var err error
	for i := range srv.addrs {
		idx := (start + i) % len(srv.addrs)
		out := req.Clone(req.Context())
		out.URL.Scheme, out.URL.Host = srv.schemes[idx], srv.hosts[idx]
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		var resp *http.Response
		resp, err = f.base.RoundTrip(out)
		if err == nil {
			srv.cur.Store(int64(idx))
			return resp, nil
		}
		var de *dialError
		if req.Context().Err() != nil || !replayable || !(errors.As(err, &de) || idempotent) {
			return nil, err
		}
		f.a.log.Debug("server unreachable, trying the next", "server", srv.addrs[idx], "err", err)
	}
	return nil, err
}
