package dns

import (
	"context"
	"errors"
	"log/slog"
	"syscall"
	"time"
)

// Listener is a DNS server in the steps of a process that binds all its
// ports before it starts anything (kvx agent's Listener interface): Bind
// takes the address, Run serves until its context ends, Close releases the
// ports when Run never ran.
type Listener struct {
	s    *Server
	opts ListenerOptions
	off  bool // Optional, and the address was taken
}

// ListenerOptions are a Listener's options.
type ListenerOptions struct {
	// Optional: when the address is in use, Bind logs a warning and the
	// listener serves nothing (kvx's built-in address on a host that
	// already answers DNS there).
	Optional bool
	// Datacenter, when the Config has none, is asked for it in Run (again
	// every few seconds until it answers) before serving.
	Datacenter func(ctx context.Context) (string, error)
}

// NewListener validates cfg and binds nothing yet.
func NewListener(cfg Config, cat Catalog, logger *slog.Logger, opts ListenerOptions) (*Listener, error) {
	if cfg.Datacenter == "" && opts.Datacenter == nil {
		return nil, errors.New("dns: a datacenter, or a way to learn it, is required")
	}
	s, err := newServer(cfg, cat, logger)
	if err != nil {
		return nil, err
	}
	return &Listener{s: s, opts: opts}, nil
}

// Bind takes the address over UDP and TCP.
func (l *Listener) Bind() error {
	err := l.s.bind()
	if err != nil && l.opts.Optional && errors.Is(err, syscall.EADDRINUSE) {
		l.s.logger.Warn("dns address in use: serving without DNS (give -dns-addr to choose one)", "addr", l.s.cfg.Addr, "err", err)
		l.off = true
		return nil
	}
	return err
}

// Addr is the bound address ("" before Bind, or when Optional and taken).
func (l *Listener) Addr() string { return l.s.addr }

// Run serves until ctx ends, learning the datacenter first if need be.
func (l *Listener) Run(ctx context.Context) error {
	if l.off {
		<-ctx.Done()
		return nil
	}
	defer l.s.Close()
	if l.s.cfg.Datacenter == "" {
		wait := time.Second
		for {
			dc, err := l.opts.Datacenter(ctx)
			if err == nil && dc != "" {
				l.s.setDatacenter(dc)
				break
			}
			l.s.logger.Warn("dns: the datacenter is not known yet; not answering until it is", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			wait = min(2*wait, 10*time.Second)
		}
	}
	l.s.serve()
	<-ctx.Done()
	return nil
}

// Close releases the ports (when Run never ran; Run closes them itself).
func (l *Listener) Close() error { return l.s.Close() }
