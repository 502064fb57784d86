package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Files name what a Store reads. CertFile and KeyFile go together.
type Files struct {
	CertFile string // PEM certificate (chain) served and shown to peers
	KeyFile  string // its private key
	CAFile   string // PEM CA(s) that sign the certificates of peers and clients
}

// Store holds the current certificate and CA pool read from Files.
type Store struct {
	files Files
	cur   atomic.Pointer[material]
}

type material struct {
	cert *tls.Certificate // nil without CertFile
	pool *x509.CertPool   // nil without CAFile
}

// Load reads the files; an error names the file.
func Load(f Files) (*Store, error) {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, errors.New("-tls-cert-file and -tls-key-file go together: give both")
	}
	s := &Store{files: f}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again. On an error the current material stays.
func (s *Store) Reload() error {
	var m material
	if s.files.CertFile != "" {
		c, err := tls.LoadX509KeyPair(s.files.CertFile, s.files.KeyFile)
		if err != nil {
			return fmt.Errorf("certificate %s, key %s: %w", s.files.CertFile, s.files.KeyFile, err)
		}
		m.cert = &c
	}
	if s.files.CAFile != "" {
		b, err := os.ReadFile(s.files.CAFile)
		if err != nil {
			return fmt.Errorf("CA file: %w", err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("CA file %s: no PEM certificate in it", s.files.CAFile)
		}
	}
	s.cur.Store(&m)
	return nil
}

// HasCert reports whether the store has a certificate to serve.
func (s *Store) HasCert() bool { return s.cur.Load().cert != nil }

// HasCA reports whether the store has a CA to check peers with.
func (s *Store) HasCA() bool { return s.cur.Load().pool != nil }

// Leaf is the current certificate, parsed (nil without one).
func (s *Store) Leaf() *x509.Certificate {
	m := s.cur.Load()
	if m.cert == nil {
		return nil
	}
	if m.cert.Leaf != nil {
		return m.cert.Leaf
	}
	l, _ := x509.ParseCertificate(m.cert.Certificate[0])
	return l
}

// ServerConfig serves the current certificate, TLS 1.2 at least. With
// verifyIncoming, clients must show a certificate signed by the CA.
func (s *Store) ServerConfig(verifyIncoming bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			c := &tls.Config{MinVersion: tls.VersionTLS12, ClientCAs: m.pool}
			if m.cert != nil {
				c.Certificates = []tls.Certificate{*m.cert}
			}
			if verifyIncoming {
				c.ClientAuth = tls.RequireAndVerifyClientCert
			} else if m.pool != nil {
				c.ClientAuth = tls.VerifyClientCertIfGiven
			}
			return c, nil
		},
	}
}

// PeerServerConfig is the server side of a server-to-server connection:
// the peer must show a certificate of the CA naming serverName.
func (s *Store) PeerServerConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			c := &tls.Config{MinVersion: tls.VersionTLS12, ClientCAs: m.pool, ClientAuth: tls.RequireAndVerifyClientCert,
				VerifyConnection: func(cs tls.ConnectionState) error { return checkPeerName(cs, serverName) }}
			if m.cert != nil {
				c.Certificates = []tls.Certificate{*m.cert}
			}
			return c, nil
		},
	}
}

// PeerClientConfig is the dialing side of a server-to-server connection:
// it shows this server's certificate and wants the peer's to be of the CA
// and name serverName.
func (s *Store) PeerClientConfig(serverName string) *tls.Config {
	m := s.cur.Load()
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: m.pool, ServerName: serverName}
	if m.cert != nil {
		c.Certificates = []tls.Certificate{*m.cert}
	}
	return c
}

func checkPeerName(cs tls.ConnectionState, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the peer showed no certificate")
	}
	if err := cs.PeerCertificates[0].VerifyHostname(name); err != nil {
		return fmt.Errorf("tls: the peer's certificate is not a server's of this datacenter: %w", err)
	}
	return nil
}

// DialTLS dials over TLS with the material current at each dial: the CA
// checks the server's certificate for serverName (or the dialed host),
// and this store's certificate is shown if it has one. So a reload
// applies to the next connection of a long-lived client (an agent's to
// its servers).
func (s *Store) DialTLS(serverName string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		name := serverName
		if name == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			name = host
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		m := s.cur.Load()
		c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: m.pool, ServerName: name}
		if m.cert != nil {
			c.Certificates = []tls.Certificate{*m.cert}
		}
		tc := tls.Client(conn, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
}
