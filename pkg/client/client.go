package client

import (
	"fmt"
	"net/http"

	consulapi "github.com/hashicorp/consul/api"
)

// Options override what Consul's environment variables say. Empty fields
// keep the environment's (or the default's) value.
type Options struct {
	Address    string // host:port or a URL
	Token      string
	Datacenter string
	// MaxConns bounds the connections to the server (0: unbounded): a
	// tool holding many blocking queries at once never opens more.
	MaxConns int
	// OnTransport, if set, is given the client's HTTP transport, so that a
	// long-running owner can close its idle connections when it stops
	// (a server shutting down waits for connections that never carried a
	// request).
	OnTransport func(*http.Transport)
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
	if conf.Transport != nil {
		// A 30 kB answer is read in one system call rather than 4 kB first.
		conf.Transport.ReadBufferSize = 64 << 10
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
