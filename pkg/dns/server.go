package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
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
	lastWarn atomic.Int64 // unix nanoseconds of the last SERVFAIL warning
}

// New validates cfg, binds its address over UDP and TCP (with port 0, one
// free port for both) and serves until Close. logger may be nil.
func New(cfg Config, cat Catalog, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, cat: cat, logger: logger, dc: dns.CanonicalName(cfg.Datacenter)}
	s.dc = s.dc[:len(s.dc)-1]
	s.domainLabels = dns.CountLabel(cfg.Domain)
	pc, ln, err := listen(cfg.Addr)
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: s, UDPSize: dns.DefaultMsgSize}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
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
	s.logger.Info("dns started", "addr", s.addr, "domain", cfg.Domain, "only_passing", !cfg.AnswerWarning)
	return s, nil
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

// Close stops serving.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
		s.wg.Wait()
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
