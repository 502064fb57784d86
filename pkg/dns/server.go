package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Server answers DNS on one address, over UDP and TCP.
type Server struct {
	cfg    Config
	cat    Catalog
	logger *slog.Logger

	domainLabels int    // labels of the domain
	dc           string // lower case

	udp, tcp *dns.Server
	addr     string
	wg       sync.WaitGroup
	once     sync.Once
	serving  atomic.Bool
	lastWarn atomic.Int64 // unix nanoseconds of the last SERVFAIL warning
}

// New validates cfg, binds its address over UDP and TCP (with port 0, one
// free port for both) and serves until Close. logger may be nil.
func New(cfg Config, cat Catalog, logger *slog.Logger) (*Server, error) {
	if cfg.Datacenter == "" {
		return nil, errors.New("dns: a datacenter is required")
	}
	s, err := newServer(cfg, cat, logger)
	if err != nil {
		return nil, err
	}
	if err := s.bind(); err != nil {
		return nil, err
	}
	s.serve()
	return s, nil
}

// newServer validates cfg and prepares a server that binds nothing yet.
func newServer(cfg Config, cat Catalog, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, cat: cat, logger: logger, domainLabels: dns.CountLabel(cfg.Domain)}
	s.setDatacenter(cfg.Datacenter)
	return s, nil
}

func (s *Server) setDatacenter(dc string) {
	s.cfg.Datacenter = dc
	s.dc = strings.TrimSuffix(dns.CanonicalName(dc), ".")
}

// bind takes the address, UDP and TCP.
func (s *Server) bind() error {
	pc, ln, err := listen(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: s, UDPSize: dns.DefaultMsgSize}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	return nil
}

// serve answers on the bound sockets until Close.
func (s *Server) serve() {
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil && !errors.Is(err, net.ErrClosed) {
				s.logger.Error("dns serve", "addr", s.addr, "err", err)
			}
		}()
		<-started
	}
	s.serving.Store(true)
	s.logger.Info("dns started", "addr", s.addr, "domain", s.cfg.Domain, "datacenter", s.cfg.Datacenter, "only_passing", !s.cfg.AnswerWarning)
}

// listen binds addr over UDP and TCP. With port 0, the TCP port is the one
// the kernel gave the UDP socket, tried again on another if TCP has it.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns address %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen dns udp %s: %w", addr, err)
		}
		bound := net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		ln, err := net.Listen("tcp", bound)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 20 {
			return nil, nil, fmt.Errorf("listen dns tcp %s: %w", bound, err)
		}
	}
}

// Addr is the bound address (UDP and TCP).
func (s *Server) Addr() string { return s.addr }

// Close stops serving (or releases the bound ports of a server that never
// served).
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		switch {
		case s.serving.Load():
			err = errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
			s.wg.Wait()
		case s.udp != nil:
			err = errors.Join(s.udp.PacketConn.Close(), s.tcp.Listener.Close())
		}
	})
	return err
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	resp := s.Answer(context.Background(), req, network)
	if err := w.WriteMsg(resp); err != nil {
		s.logger.Debug("dns write", "remote", w.RemoteAddr().String(), "err", err)
	}
}
