package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/agent"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
	"github.com/kvxproject/kvx/pkg/tlsutil"
)

// writePKI writes a CA, a server certificate and a client certificate,
// and returns their files: ca, server cert, server key, client cert, client key.
func writePKI(t *testing.T) (string, string, string, string, string) {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey, err := tlsutil.NewCA(tlsutil.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := []string{write("ca.pem", caCert)}
	write("ca-key.pem", caKey)
	for _, name := range []string{"server.dc1.consul", "client.dc1.consul"} {
		c, k, err := tlsutil.NewCert(tlsutil.CertOptions{CACert: caCert, CAKey: caKey, Name: name,
			DNSNames: []string{name, "localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, write(name+".pem", c), write(name+"-key.pem", k))
	}
	return files[0], files[1], files[2], files[3], files[4]
}

// An agent talks to a server that serves HTTPS only and requires client
// certificates, and serves its own API over HTTPS with client
// certificates required: registration, heartbeats and forwarded requests
// all go over TLS.
func TestAgentOverTLS(t *testing.T) {
	ca, srvCert, srvKey, cliCert, cliKey := writePKI(t)
	srv := startServer(t, func(o *server.Options) {
		o.HTTPAddr = server.HTTPDisabled
		o.HTTPSAddr = "127.0.0.1:0"
		o.TLS = server.TLSOptions{CertFile: srvCert, KeyFile: srvKey, CAFile: ca, VerifyIncoming: true}
	})
	a := startAgent(t, []string{"https://" + srv.HTTPSAddr()}, func(o *agent.Options) {
		o.HTTPSAddr = "127.0.0.1:0"
		o.TLS = agent.TLSOptions{CertFile: cliCert, KeyFile: cliKey, CAFile: ca, VerifyIncoming: true, ServerName: "server.dc1.consul"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	httpsAddr, err := a.HTTPSAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srvClient, err := client.New(client.Options{Address: "https://" + srv.HTTPSAddr(), TLS: client.TLS{CAFile: ca, CertFile: cliCert, KeyFile: cliKey}})
	if err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the agent's node registered over TLS", func() bool {
		n, _, err := srvClient.Catalog().Node("agent-1", nil)
		return err == nil && n != nil
	})
	ac, err := client.New(client.Options{Address: "https://" + httpsAddr, TLS: client.TLS{CAFile: ca, CertFile: cliCert, KeyFile: cliKey}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.KV().Put(&consulapi.KVPair{Key: "via-agent", Value: []byte("x")}, nil); err != nil {
		t.Fatalf("put through the agent's HTTPS API, forwarded over HTTPS: %v", err)
	}
	if p, _, err := srvClient.KV().Get("via-agent", nil); err != nil || p == nil || string(p.Value) != "x" {
		t.Fatalf("the forwarded write on the server: %v, %v", p, err)
	}
	anon, err := client.New(client.Options{Address: "https://" + httpsAddr, TLS: client.TLS{CAFile: ca}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Agent().Self(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("the agent's HTTPS API without a client certificate: %v; want refused", err)
	}

	// Rotation: new files and ReloadTLS (SIGHUP's) serve the new certificate.
	served := func() string {
		pool := x509.NewCertPool()
		b, _ := os.ReadFile(ca)
		pool.AppendCertsFromPEM(b)
		cert, err := tls.LoadX509KeyPair(cliCert, cliKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", httpsAddr, &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := served()
	caCertPEM, _ := os.ReadFile(ca)
	caKeyPEM, _ := os.ReadFile(filepath.Join(filepath.Dir(ca), "ca-key.pem"))
	c, k, err := tlsutil.NewCert(tlsutil.CertOptions{CACert: caCertPEM, CAKey: caKeyPEM, Name: "client.dc1.consul",
		DNSNames: []string{"client.dc1.consul", "localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	if os.WriteFile(cliCert, c, 0o600) != nil || os.WriteFile(cliKey, k, 0o600) != nil {
		t.Fatal("write the new certificate")
	}
	if err := a.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if after := served(); after == before {
		t.Fatalf("after the reload the agent still serves serial %s", before)
	}
	if _, err := ac.KV().Put(&consulapi.KVPair{Key: "after-reload", Value: []byte("y")}, nil); err != nil {
		t.Fatalf("put through the agent after the reload: %v", err)
	}
}
