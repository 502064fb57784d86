package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/kvxproject/kvx/pkg/connlimit"
	"github.com/kvxproject/kvx/pkg/tlsutil"
)

// TLS. The HTTPS API serves TLSOptions.CertFile (TLS 1.2 at least); with
// VerifyIncoming a client must show a certificate signed by CAFile. With
// CAFile, the Raft port speaks mutual TLS: the dialer and the acceptor
// each show their certificate and check that the other's is signed by the
// CA and names server.<dc>.<domain> (Consul's verify_server_hostname), so
// neither a stranger nor a client certificate of the same CA can join,
// forward or take Raft traffic. The cluster ID handshake (clusterid.go)
// runs inside the TLS connection as before. ReloadTLS (SIGHUP) reads the
// files again; the next handshake uses them, open connections go on.

// TLSOptions are a server's certificates.
type TLSOptions struct {
	CertFile, KeyFile string // served by HTTPS and shown to peers
	CAFile            string // signs peers' and clients' certificates; turns on mutual TLS between servers
	// VerifyIncoming requires HTTPS clients to show a certificate signed
	// by CAFile.
	VerifyIncoming bool
	// Domain of server names (server.<dc>.<domain>); default "consul".
	Domain string
}

func (o *Options) validateTLS() error {
	t := o.TLS
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return invalid("-tls-cert-file and -tls-key-file go together: give both")
	case o.HTTPSAddr != "" && t.CertFile == "":
		return invalid("-https-addr %s needs -tls-cert-file and -tls-key-file", o.HTTPSAddr)
	case t.VerifyIncoming && t.CAFile == "":
		return invalid("-tls-verify-incoming needs -tls-ca-file, the CA of the clients' certificates")
	case t.VerifyIncoming && o.HTTPSAddr == "":
		return invalid("-tls-verify-incoming needs -https-addr")
	case t.CAFile != "" && t.CertFile == "":
		return invalid("-tls-ca-file turns on mutual TLS between servers: give this server's -tls-cert-file and -tls-key-file too")
	case o.HTTPAddr == HTTPDisabled && o.HTTPSAddr == "":
		return invalid("-http-addr \"\" leaves no API: give -https-addr")
	}
	if o.HTTPSAddr != "" {
		if err := checkAddr("-https-addr", o.HTTPSAddr, true); err != nil {
			return err
		}
	}
	return nil
}

// setupTLS loads the certificates, and checks that a server that talks
// mutual TLS to its peers has a server certificate of its datacenter.
func (s *Server) setupTLS() error {
	t := s.opts.TLS
	if t.CertFile == "" && t.CAFile == "" {
		return nil
	}
	st, err := tlsutil.Load(tlsutil.Files{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile})
	if err != nil {
		return err
	}
	s.tls = st
	if st.HasCA() {
		if err := s.checkServerCert(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) checkServerCert() error {
	name := tlsutil.ServerName(s.opts.Datacenter, s.opts.TLS.Domain)
	leaf := s.tls.Leaf()
	if leaf == nil {
		return errors.New("tls: no certificate")
	}
	if err := leaf.VerifyHostname(name); err != nil {
		return fmt.Errorf("-tls-cert-file %s does not name %s, which peers check (kvx tls cert create -server -dc %s makes one): %w",
			s.opts.TLS.CertFile, name, s.opts.Datacenter, err)
	}
	return nil
}

// peerServerName is the name every server's certificate must carry.
func (s *Server) peerServerName() string {
	return tlsutil.ServerName(s.opts.Datacenter, s.opts.TLS.Domain)
}

// peerTLS is the mutual TLS of the Raft port: nil without a CA.
func (s *Server) peerTLS() (server func() *tls.Config, client func() *tls.Config) {
	if s.tls == nil || !s.tls.HasCA() {
		return nil, nil
	}
	name := s.peerServerName()
	srv := s.tls.PeerServerConfig(name)
	return func() *tls.Config { return srv }, func() *tls.Config { return s.tls.PeerClientConfig(name) }
}

// ReloadTLS reads the certificate, key and CA files again (on SIGHUP): the
// next handshake uses them. On an error the current ones stay.
func (s *Server) ReloadTLS() error {
	if s.tls == nil {
		return nil
	}
	if err := s.tls.Reload(); err != nil {
		return fmt.Errorf("reload TLS: %w", err)
	}
	if s.tls.HasCA() {
		if err := s.checkServerCert(); err != nil {
			s.logger.Warn("reloaded certificate is not this datacenter's server certificate: peers will refuse it", "err", err)
		}
	}
	s.logger.Info("TLS certificates reloaded", "cert", s.opts.TLS.CertFile, "ca", s.opts.TLS.CAFile)
	return nil
}

// listenAPI binds the HTTP and HTTPS listeners the options ask for, each
// capped per client IP.
func (s *Server) listenAPI() error {
	if s.opts.HTTPAddr != HTTPDisabled {
		ln, err := net.Listen("tcp", s.opts.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listen http %s: %w", s.opts.HTTPAddr, err)
		}
		s.httpLn = ln
	}
	if s.opts.HTTPSAddr != "" {
		ln, err := net.Listen("tcp", s.opts.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("listen https %s: %w", s.opts.HTTPSAddr, err)
		}
		s.httpsLn = ln
	}
	return nil
}

// serveAPI serves the API on the bound listeners.
func (s *Server) serveAPI() {
	if s.httpLn != nil {
		s.goServe(s.httpSrv, connlimit.Wrap(s.httpLn, s.opts.MaxConnsPerClient, s.logger))
	}
	if s.httpsLn != nil {
		ln := tls.NewListener(connlimit.Wrap(s.httpsLn, s.opts.MaxConnsPerClient, s.logger), s.tls.ServerConfig(s.opts.TLS.VerifyIncoming))
		s.goServe(s.httpsSrv, ln)
	}
}

// HTTPSAddr is the bound HTTPS address ("" without one).
func (s *Server) HTTPSAddr() string {
	if s.httpsLn == nil {
		return ""
	}
	return s.httpsLn.Addr().String()
}
