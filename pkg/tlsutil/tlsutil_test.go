package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A CA key that is not the CA's is refused, naming the mismatch.
func TestParseCARefusesAnotherKey(t *testing.T) {
	c1, k1, err := NewCA(CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, k2, err := NewCA(CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ParseCA(c1, k1); err != nil {
		t.Fatalf("matching pair: %v", err)
	}
	if _, _, err := ParseCA(c1, k2); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, _, err := ParseCA([]byte("junk"), k1); err == nil {
		t.Fatal("junk CA accepted")
	}
}

// Between servers, each side wants the other's certificate to name the
// server name: a client certificate of the same CA is refused by both.
func TestPeerConfigsCheckTheServerName(t *testing.T) {
	caCert, caKey, err := NewCA(CAOptions{NameConstraint: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := write("ca.pem", caCert)
	store := func(name string) *Store {
		c, k, err := NewCert(CertOptions{CACert: caCert, CAKey: caKey, Name: name, DNSNames: []string{name}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := Load(Files{CertFile: write(name+".pem", c), KeyFile: write(name+"-key.pem", k), CAFile: ca})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	srvA, srvB, cli := store("server.dc1.consul"), store("server.dc1.consul"), store("client.dc1.consul")
	name := ServerName("dc1", "")
	handshake := func(dialer, acceptor *Store) error {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		errc := make(chan error, 1)
		go func() { errc <- tls.Server(b, acceptor.PeerServerConfig(name)).Handshake() }()
		err := tls.Client(a, dialer.PeerClientConfig(name)).Handshake()
		a.Close()
		if serr := <-errc; err == nil {
			err = serr
		}
		return err
	}
	if err := handshake(srvA, srvB); err != nil {
		t.Fatalf("server to server: %v", err)
	}
	if err := handshake(cli, srvB); err == nil {
		t.Fatal("a client certificate was taken as a server's by the acceptor")
	}
	if err := handshake(srvA, cli); err == nil {
		t.Fatal("a client certificate was taken as a server's by the dialer")
	}
	if leaf := srvA.Leaf(); leaf == nil || leaf.VerifyHostname(name) != nil {
		t.Fatalf("Leaf: %v", leaf)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caCert)
	if _, err := srvA.Leaf().Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
		t.Fatalf("under a name-constrained CA: %v", err)
	}
}
