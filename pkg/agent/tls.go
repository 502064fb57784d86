package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/connlimit"
	"github.com/kvxproject/kvx/pkg/tlsutil"
)

// TLS of an agent, as a server's (see package server): its API over HTTPS
// on HTTPSAddr with TLSOptions.CertFile (client certificates required with
// VerifyIncoming), and its calls to the servers over HTTPS when a -join
// address is https:// (or CONSUL_HTTP_SSL=true), checking the servers'
// certificates with CAFile and showing CertFile to them. ReloadTLS (SIGHUP)
// reads the served certificate again.

// HTTPDisabled as HTTPAddr serves no plain HTTP (with HTTPSAddr).
const HTTPDisabled = "off"

// DefaultMaxConnsPerClient caps connections per client IP, as Consul's
// http_max_conns_per_client.
const DefaultMaxConnsPerClient = 200

// TLSOptions are an agent's certificates.
type TLSOptions struct {
	CertFile, KeyFile string // served on HTTPSAddr, shown to servers
	CAFile            string // checks the servers' and (VerifyIncoming) clients' certificates
	VerifyIncoming    bool
	// ServerName is the name checked in the servers' certificates
	// (default: the -join address's host).
	ServerName string
}

// ErrInvalidOptions is wrapped by the errors of options that can never
// work (TLS flags that do not go together).
var ErrInvalidOptions = errors.New("invalid agent options")

func (o *Options) validateTLS() error {
	if err := o.checkTLS(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return nil
}

func (o *Options) checkTLS() error {
	t := o.TLS
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return errors.New("-tls-cert-file and -tls-key-file go together: give both")
	case o.HTTPSAddr != "" && t.CertFile == "":
		return fmt.Errorf("-https-addr %s needs -tls-cert-file and -tls-key-file", o.HTTPSAddr)
	case t.VerifyIncoming && (t.CAFile == "" || o.HTTPSAddr == ""):
		return errors.New("-tls-verify-incoming needs -https-addr and -tls-ca-file")
	case o.HTTPAddr == HTTPDisabled && o.HTTPSAddr == "":
		return errors.New("-http-addr \"\" leaves no API: give -https-addr")
	}
	return nil
}

// serverClientOptions are the client options of the calls to a server
// (with the agent token):
// with TLS options, HTTPS connections come from the store, so a reload
// applies to the next one.
func serverClientOptions(o *Options, st *tlsutil.Store) func(addr string) client.Options {
	return func(addr string) client.Options {
		co := client.Options{Address: addr, Token: o.ACLAgentToken, TLS: client.TLS{CAFile: o.TLS.CAFile, CertFile: o.TLS.CertFile,
			KeyFile: o.TLS.KeyFile, ServerName: o.TLS.ServerName}}
		if st != nil {
			co.DialTLS = st.DialTLS(o.TLS.ServerName)
		}
		return co
	}
}

// splitScheme splits "https://host:port" into its scheme and host.
func splitScheme(addr string) (scheme, host string) {
	if s, h, ok := strings.Cut(addr, "://"); ok {
		return s, strings.TrimSuffix(h, "/")
	}
	return "", addr
}

// loadTLS checks the TLS options and loads their files (nil without any).
func loadTLS(o *Options) (*tlsutil.Store, error) {
	if err := o.validateTLS(); err != nil {
		return nil, err
	}
	if o.TLS.CertFile == "" && o.TLS.CAFile == "" {
		return nil, nil
	}
	return tlsutil.Load(tlsutil.Files{CertFile: o.TLS.CertFile, KeyFile: o.TLS.KeyFile, CAFile: o.TLS.CAFile})
}

// addHTTPListeners adds the API's listeners, HTTP and HTTPS, which serve
// one handler.
func (a *Agent) addHTTPListeners() {
	h := a.harden(a.handler())
	if a.opts.HTTPAddr != HTTPDisabled {
		a.Listen(&httpListener{a: a, addr: a.opts.HTTPAddr, report: a.httpAddr, handler: h})
	}
	if a.opts.HTTPSAddr != "" {
		a.Listen(&httpListener{a: a, addr: a.opts.HTTPSAddr, report: a.httpsAddr, handler: h,
			tls: a.tls.ServerConfig(a.opts.TLS.VerifyIncoming)})
	}
}

// ReloadTLS reads the certificate, key and CA files again: the next
// handshake of the HTTPS API, and the next connection to a server, use
// them. On an error the current ones stay.
func (a *Agent) ReloadTLS() error {
	if a.tls == nil {
		return nil
	}
	if err := a.tls.Reload(); err != nil {
		return fmt.Errorf("reload TLS: %w", err)
	}
	a.log.Info("TLS certificates reloaded", "cert", a.opts.TLS.CertFile, "ca", a.opts.TLS.CAFile)
	return nil
}

// HTTPSAddr waits until the HTTPS API is bound and returns its address.
func (a *Agent) HTTPSAddr(ctx context.Context) (string, error) {
	select {
	case addr := <-a.httpsAddr:
		a.httpsAddr <- addr
		return addr, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// selfClient is the client options of a call to the agent's own API (its
// watches): HTTP, else HTTPS with its own certificate.
func (a *Agent) selfClient(ctx context.Context) (client.Options, error) {
	if a.opts.HTTPAddr != HTTPDisabled {
		addr, err := a.HTTPAddr(ctx)
		return client.Options{Address: addr}, err
	}
	addr, err := a.HTTPSAddr(ctx)
	return client.Options{Address: "https://" + addr, TLS: client.TLS{CAFile: a.opts.TLS.CAFile,
		CertFile: a.opts.TLS.CertFile, KeyFile: a.opts.TLS.KeyFile, ServerName: a.opts.TLS.ServerName}}, err
}

// httpListener serves the HTTP API on one address, over TLS when tls is
// set, capped per client IP.
type httpListener struct {
	a       *Agent
	addr    string
	report  chan string // gets the bound address, once
	tls     *tls.Config
	handler http.Handler
	ln      net.Listener
}

func (l *httpListener) Bind() error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		if l.tls != nil {
			return fmt.Errorf("https api: %w", err)
		}
		return fmt.Errorf("http api: %w", err)
	}
	l.ln = ln
	return nil
}

func (l *httpListener) Close() error { return l.ln.Close() }

func (l *httpListener) Run(ctx context.Context) error {
	a := l.a
	l.report <- l.ln.Addr().String()
	max := a.opts.MaxConnsPerClient
	if max == 0 {
		max = DefaultMaxConnsPerClient
	}
	ln := connlimit.Wrap(l.ln, max, a.log)
	name := "http api"
	if l.tls != nil {
		ln, name = tls.NewListener(ln, l.tls), "https api"
	}
	srv := &http.Server{Handler: l.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 1 << 20, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	a.log.Info(name, "addr", l.ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
