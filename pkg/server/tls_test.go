package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
	"github.com/kvxproject/kvx/pkg/tlsutil"
)

// pki is a CA and certificates in files, as kvx tls writes them.
type pki struct {
	dir           string
	caFile        string
	caCert, caKey []byte
	serverCert    string // server.dc1.consul
	serverKey     string
	clientCert    string // client.dc1.consul
	clientKey     string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	if p.caCert, p.caKey, err = tlsutil.NewCA(tlsutil.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	p.caFile = p.write(t, "ca.pem", p.caCert)
	p.serverCert, p.serverKey = p.cert(t, "server", "server.dc1.consul")
	p.clientCert, p.clientKey = p.cert(t, "client", "client.dc1.consul")
	return p
}

func (p *pki) write(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cert signs a certificate for name and writes it as <file>.pem and
// <file>-key.pem (overwriting).
func (p *pki) cert(t *testing.T, file, name string) (string, string) {
	t.Helper()
	c, k, err := tlsutil.NewCert(tlsutil.CertOptions{CACert: p.caCert, CAKey: p.caKey, Name: name,
		DNSNames: []string{name, "localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, file+".pem", c), p.write(t, file+"-key.pem", k)
}

func (p *pki) serverTLS() server.TLSOptions {
	return server.TLSOptions{CertFile: p.serverCert, KeyFile: p.serverKey, CAFile: p.caFile}
}

func httpsClient(t *testing.T, addr string, tlsOpts client.TLS) *consulapi.Client {
	t.Helper()
	c, err := client.New(client.Options{Address: "https://" + addr, TLS: tlsOpts})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// HTTPS with client certificates required, through consul/api: refused
// without a certificate (and with one of another CA), served with one; no
// plain HTTP; nothing below TLS 1.2.
func TestHTTPSRequiresClientCertificate(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	srv := servertest.Start(t, func(o *server.Options) {
		o.HTTPAddr = server.HTTPDisabled
		o.HTTPSAddr = "127.0.0.1:0"
		o.TLS = p.serverTLS()
		o.TLS.VerifyIncoming = true
	})
	if srv.HTTPAddr() != "" {
		t.Fatalf("HTTP served on %s with -http-addr off", srv.HTTPAddr())
	}
	addr := srv.HTTPSAddr()

	anon := httpsClient(t, addr, client.TLS{CAFile: p.caFile})
	if _, err := anon.KV().Put(&consulapi.KVPair{Key: "a", Value: []byte("x")}, nil); err == nil {
		t.Fatal("a client without a certificate was served")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("refusal without a certificate: %v; want a TLS certificate error", err)
	}
	stranger := httpsClient(t, addr, client.TLS{CAFile: p.caFile, CertFile: other.clientCert, KeyFile: other.clientKey})
	if _, _, err := stranger.KV().Get("a", nil); err == nil {
		t.Fatal("a client with another CA's certificate was served")
	}
	untrusting := httpsClient(t, addr, client.TLS{CertFile: p.clientCert, KeyFile: p.clientKey})
	if _, _, err := untrusting.KV().Get("a", nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without the CA trusted the server: %v", err)
	}

	ok := httpsClient(t, addr, client.TLS{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey})
	if _, err := ok.KV().Put(&consulapi.KVPair{Key: "a", Value: []byte("x")}, nil); err != nil {
		t.Fatalf("put with a client certificate: %v", err)
	}
	if kv, _, err := ok.KV().Get("a", nil); err != nil || kv == nil || string(kv.Value) != "x" {
		t.Fatalf("get with a client certificate: %v, %v", kv, err)
	}
	// By name, as clients check it (CONSUL_TLS_SERVER_NAME).
	named := httpsClient(t, addr, client.TLS{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: "server.dc1.consul"})
	if _, _, err := named.KV().Get("a", nil); err != nil {
		t.Fatalf("with -tls-server-name server.dc1.consul: %v", err)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caCert)
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

func servedSerial(t *testing.T, addr string, p *pki) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caCert)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func fileSerial(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// Certificate rotation: new files, ReloadTLS (what SIGHUP calls), and the
// next connection gets the new certificate while an open connection goes on;
// a broken file is refused and the running certificate stays.
func TestReloadServesTheNewCertificate(t *testing.T) {
	p := newPKI(t)
	srv := servertest.Start(t, func(o *server.Options) {
		o.HTTPSAddr = "127.0.0.1:0"
		o.TLS = server.TLSOptions{CertFile: p.serverCert, KeyFile: p.serverKey}
	})
	first := fileSerial(t, p.serverCert)
	if got := servedSerial(t, srv.HTTPSAddr(), p); got != first {
		t.Fatalf("serves serial %s, want %s", got, first)
	}
	c := httpsClient(t, srv.HTTPSAddr(), client.TLS{CAFile: p.caFile})
	if _, err := c.KV().Put(&consulapi.KVPair{Key: "k", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	p.cert(t, "server", "server.dc1.consul") // rotated in place
	second := fileSerial(t, p.serverCert)
	if second == first {
		t.Fatal("the new certificate has the old serial")
	}
	if err := srv.ReloadTLS(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := servedSerial(t, srv.HTTPSAddr(), p); got != second {
		t.Fatalf("after reload serves serial %s, want the new %s", got, second)
	}
	if _, _, err := c.KV().Get("k", nil); err != nil { // the kept-alive connection
		t.Fatalf("an open client after the reload: %v", err)
	}
	if err := os.WriteFile(p.serverKey, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadTLS(); err == nil || !strings.Contains(err.Error(), p.serverCert) {
		t.Fatalf("reload of a broken key: %v; want an error naming the files", err)
	}
	if got := servedSerial(t, srv.HTTPSAddr(), p); got != second {
		t.Fatalf("after a refused reload serves %s, want %s still", got, second)
	}
}

// Options that cannot work are refused before anything is bound.
func TestTLSOptionsRefused(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		opts server.Options
		msg  string
	}{
		{server.Options{Dev: true, HTTPSAddr: "127.0.0.1:0"}, "-https-addr 127.0.0.1:0 needs -tls-cert-file"},
		{server.Options{Dev: true, TLS: server.TLSOptions{CertFile: p.serverCert}}, "go together"},
		{server.Options{Dev: true, HTTPSAddr: "127.0.0.1:0", TLS: server.TLSOptions{CertFile: p.serverCert, KeyFile: p.serverKey, VerifyIncoming: true}}, "-tls-verify-incoming needs -tls-ca-file"},
		{server.Options{Dev: true, TLS: server.TLSOptions{CAFile: p.caFile}}, "give this server's -tls-cert-file"},
		{server.Options{Dev: true, HTTPAddr: server.HTTPDisabled}, "give -https-addr"},
	} {
		_, err := server.New(tc.opts)
		if !errors.Is(err, server.ErrInvalidOptions) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v; want %q", tc.opts, err, tc.msg)
		}
	}
	// A client certificate cannot be a server's: peers would refuse it.
	_, err := server.New(server.Options{Dev: true, NodeName: "n", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		TLS: server.TLSOptions{CertFile: p.clientCert, KeyFile: p.clientKey, CAFile: p.caFile}})
	if err == nil || !strings.Contains(err.Error(), "does not name server.dc1.consul") {
		t.Fatalf("a client certificate as a server's: %v", err)
	}
	// Unreadable files are named.
	_, err = server.New(server.Options{Dev: true, NodeName: "n", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0",
		TLS: server.TLSOptions{CertFile: filepath.Join(p.dir, "missing.pem"), KeyFile: p.serverKey}})
	if err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("a missing certificate: %v", err)
	}
}

// Three servers over mutual TLS: they form a cluster, forward writes to
// the leader, and a plain connection to the Raft port is refused.
func TestThreeNodeClusterOverMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	p := newPKI(t)
	logs := &servertest.Buffer{}
	srvs, clients := cluster(t, func(o *server.Options) {
		o.TLS = p.serverTLS()
		o.Logger = slog.New(slog.NewTextHandler(logs, nil)).With("node", o.NodeName)
	})
	conf, err := clients[0].Operator().RaftGetConfiguration(nil)
	if err != nil || len(conf.Servers) != 3 {
		t.Fatalf("raft configuration = %+v, %v; want 3 servers", conf, err)
	}
	for i, c := range clients { // followers forward over the TLS Raft port
		mustPut(t, c.KV(), "tls/"+srvs[i].NodeName(), "v")
	}
	for _, c := range clients {
		pairs, _, err := c.KV().List("tls/", &consulapi.QueryOptions{RequireConsistent: true})
		if err != nil || len(pairs) != 3 {
			t.Fatalf("list: %d pairs, %v; want 3", len(pairs), err)
		}
	}
	// Without TLS, the Raft port says nothing and hangs up.
	conn, err := net.Dial("tcp", srvs[0].RaftAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write(append([]byte{'H'}, make([]byte, 16)...))
	_, _ = conn.Write([]byte("GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if b, err := conn.Read(make([]byte, 512)); err == nil && b > 0 {
		buf := make([]byte, 512)
		n, _ := conn.Read(buf)
		if strings.Contains(string(buf[:n]), "200 OK") {
			t.Fatal("a plain connection was served on the TLS Raft port")
		}
	}
	servertest.Eventually(t, "the plain connection refused in the log", func() bool {
		return strings.Contains(logs.String(), "refused a connection on the raft port: TLS")
	})
}

// A server whose certificate comes from another CA cannot join: its hello
// is refused at the handshake, and the cluster stays as it was.
func TestServerOfAnotherCACannotJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node raft: skipped under -short")
	}
	p, other := newPKI(t), newPKI(t)
	logs := &servertest.Buffer{}
	first, c1 := startNode(t, server.Options{NodeName: "n1", DataDir: t.TempDir(), HeartbeatTimeout: 300 * time.Millisecond,
		TLS: p.serverTLS(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	waitLeader(t, first)
	mustPut(t, c1.KV(), "k", "v")
	intruderLogs := &servertest.Buffer{}
	intruder, _ := startNode(t, server.Options{NodeName: "n2", DataDir: t.TempDir(), HeartbeatTimeout: 300 * time.Millisecond,
		Join: []string{first.RaftAddr()}, TLS: other.serverTLS(), Logger: slog.New(slog.NewTextHandler(intruderLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	servertest.Eventually(t, "the intruder's handshake refused by n1", func() bool {
		return strings.Contains(logs.String(), "refused a connection on the raft port: TLS")
	})
	servertest.Eventually(t, "the intruder told its hello failed", func() bool {
		return strings.Contains(intruderLogs.String(), "msg=hello") && strings.Contains(intruderLogs.String(), "tls: ")
	})
	conf, err := c1.Operator().RaftGetConfiguration(nil)
	if err != nil || len(conf.Servers) != 1 {
		t.Fatalf("raft configuration = %+v, %v; want n1 alone", conf, err)
	}
	if intruder.IsLeader() {
		t.Fatal("the intruder leads a cluster")
	}
}
