package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
)

// Options override what Consul's environment variables say. Empty fields
// keep the environment's (or the default's) value.
type Options struct {
	Address    string // host:port or a URL
	Token      string
	Datacenter string
	// Stale makes the KV client's reads ?stale: any server answers from its
	// own state instead of forwarding to the leader, so a cluster's
	// servers share a fleet's blocking queries (writes still go to the
	// leader). Only NewKV's client reads it.
	Stale bool
	// MaxConns bounds the connections to the server (0: unbounded): a
	// tool holding many blocking queries at once never opens more.
	MaxConns int
	// OnTransport, if set, is given the client's HTTP transport, so that a
	// long-running owner can close its idle connections when it stops
	// (a server shutting down waits for connections that never carried a
	// request).
	OnTransport func(*http.Transport)
	// DialTLS, if set, makes the HTTPS connections instead of TLS (a
	// long-lived owner whose certificates are reloaded: the agent); TLS is
	// then not used.
	DialTLS func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS overrides CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT,
	// CONSUL_CLIENT_KEY and CONSUL_TLS_SERVER_NAME field by field. HTTPS
	// itself is asked for as Consul's CLI asks: an https:// address or
	// CONSUL_HTTP_SSL=true.
	TLS TLS
}

// TLS is the client side of HTTPS, as the consul CLI's -ca-file,
// -ca-path, -client-cert, -client-key and -tls-server-name flags.
type TLS struct {
	CAFile     string // PEM file of the CA(s) that sign the server's certificate
	CAPath     string // directory of such PEM files
	CertFile   string // client certificate, for a server that requires one
	KeyFile    string // its private key
	ServerName string // name checked in the server's certificate (SNI), default: the address's host
	// Insecure skips checking the server's certificate (as
	// CONSUL_HTTP_SSL_VERIFY=false; consul-template's ssl.verify = false).
	Insecure bool
}

// config applies defaults < CONSUL_* environment < opts.
func config(opts Options) *consulapi.Config {
	conf := consulapi.DefaultConfig()
	if opts.Address != "" {
		conf.Address = opts.Address
	}
	if opts.Token != "" {
		conf.Token = opts.Token
	}
	if opts.Datacenter != "" {
		conf.Datacenter = opts.Datacenter
	}
	t := &conf.TLSConfig
	for _, o := range []struct {
		dst *string
		v   string
	}{
		{&t.CAFile, opts.TLS.CAFile}, {&t.CAPath, opts.TLS.CAPath}, {&t.CertFile, opts.TLS.CertFile},
		{&t.KeyFile, opts.TLS.KeyFile}, {&t.Address, opts.TLS.ServerName},
	} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	if opts.TLS.Insecure {
		t.InsecureSkipVerify = true
	}
	if conf.Transport != nil {
		// A 30 kB answer is read in one system call rather than 4 kB first.
		conf.Transport.ReadBufferSize = 64 << 10
		if opts.DialTLS != nil {
			conf.Transport.DialTLSContext = opts.DialTLS
		}
		if opts.MaxConns > 0 {
			conf.Transport.MaxConnsPerHost = opts.MaxConns
			conf.Transport.MaxIdleConnsPerHost = opts.MaxConns
		}
	}
	return conf
}

// New returns a Consul API client: defaults < CONSUL_* environment < opts.
func New(opts Options) (*consulapi.Client, error) {
	conf := config(opts)
	if opts.OnTransport != nil && conf.Transport != nil {
		opts.OnTransport(conf.Transport)
	}
	c, err := consulapi.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("consul client %s: %w", conf.Address, err)
	}
	return c, nil
}

// TLSConfig is the client TLS configuration New's clients use (defaults <
// CONSUL_* environment < opts), and whether they speak HTTPS: for a
// transport of kvx's own that talks to the same servers (the agent's
// forwarding proxy).
func TLSConfig(opts Options) (*tls.Config, bool, error) {
	conf := config(opts)
	https := conf.Scheme == "https" || strings.HasPrefix(conf.Address, "https://")
	tc, err := consulapi.SetupTLSConfig(&conf.TLSConfig)
	if err != nil {
		return nil, false, fmt.Errorf("client TLS: %w", err)
	}
	return tc, https, nil
}
