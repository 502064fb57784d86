package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// kvx tls writes the files consul tls writes, named with kvx, and the
// certificates chain to the CA with consul's names.
func TestTLSCreatesCAAndCertificatesAsConsulDoes(t *testing.T) {
	t.Chdir(t.TempDir())
	out, errOut, code := run(t, t.Context(), "tls", "ca", "create")
	if code != 0 || !strings.Contains(out, "Saved kvx-agent-ca.pem") || !strings.Contains(out, "Saved kvx-agent-ca-key.pem") {
		t.Fatalf("ca create: exit %d, %q %q", code, out, errOut)
	}
	if st, err := os.Stat("kvx-agent-ca-key.pem"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode: %v %v", st, err)
	}
	if _, errOut, code := run(t, t.Context(), "tls", "ca", "create"); code != exitError || !strings.Contains(errOut, "kvx-agent-ca.pem exists") {
		t.Fatalf("second ca create: exit %d %q; want a refusal, the CA kept", code, errOut)
	}
	for _, want := range []string{"dc1-server-kvx-0", "dc1-server-kvx-1"} {
		out, errOut, code := run(t, t.Context(), "tls", "cert", "create", "-server")
		if code != 0 || !strings.Contains(out, "Saved "+want+".pem") || !strings.Contains(out, "Saved "+want+"-key.pem") {
			t.Fatalf("cert create -server: exit %d, %q %q; want %s", code, out, errOut, want)
		}
	}
	if _, errOut, code := run(t, t.Context(), "tls", "cert", "create", "-server", "-dc", "east", "-node", "n1",
		"-additional-dnsname", "kvx.example.com", "-additional-ipaddress", "10.1.2.3", "-days", "30"); code != 0 {
		t.Fatalf("cert create -dc east: %q", errOut)
	}
	if _, errOut, code := run(t, t.Context(), "tls", "cert", "create", "-client"); code != 0 {
		t.Fatalf("cert create -client: %q", errOut)
	}
	ca := readCert(t, "kvx-agent-ca.pem")
	if !ca.IsCA {
		t.Fatal("the CA is not a CA")
	}
	if k, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("CA key: %T, want ECDSA P-256", ca.PublicKey)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, tc := range []struct {
		file, cn string
		dns      []string
		ip       string
		usage    x509.ExtKeyUsage
	}{
		{"dc1-server-kvx-0.pem", "server.dc1.consul", []string{"server.dc1.consul", "localhost"}, "127.0.0.1", x509.ExtKeyUsageClientAuth},
		{"east-server-kvx-0.pem", "server.east.consul", []string{"kvx.example.com", "n1.server.east.consul", "server.east.consul", "localhost"}, "10.1.2.3", x509.ExtKeyUsageServerAuth},
		{"dc1-client-kvx-0.pem", "client.dc1.consul", []string{"client.dc1.consul", "localhost"}, "127.0.0.1", x509.ExtKeyUsageClientAuth},
	} {
		c := readCert(t, tc.file)
		if c.Subject.CommonName != tc.cn || !slices.Equal(c.DNSNames, tc.dns) {
			t.Errorf("%s: CN %q DNS %q; want %q %q", tc.file, c.Subject.CommonName, c.DNSNames, tc.cn, tc.dns)
		}
		if !slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP(tc.ip)) }) {
			t.Errorf("%s: IPs %v lack %s", tc.file, c.IPAddresses, tc.ip)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: tc.cn, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
			t.Errorf("%s does not verify against the CA: %v", tc.file, err)
		}
	}
	if d := readCert(t, "east-server-kvx-0.pem").NotAfter.Sub(readCert(t, "east-server-kvx-0.pem").NotBefore).Hours() / 24; d < 29 || d > 31 {
		t.Errorf("-days 30: valid for %.1f days", d)
	}
	for _, args := range [][]string{
		{"tls", "cert", "create"},
		{"tls", "cert", "create", "-server", "-client"},
		{"tls", "cert", "create", "-client", "-node", "n1"},
		{"tls", "cert", "create", "-server", "-additional-ipaddress", "nope"},
	} {
		if _, errOut, code := run(t, t.Context(), args...); code != exitUsage {
			t.Errorf("kvx %q: exit %d %q; want a usage error", args, code, errOut)
		}
	}
	os.Remove("kvx-agent-ca-key.pem")
	if _, errOut, code := run(t, t.Context(), "tls", "cert", "create", "-client"); code != exitError || !strings.Contains(errOut, "kvx-agent-ca-key.pem") {
		t.Fatalf("without the CA key: exit %d %q", code, errOut)
	}
}

// startHTTPSServer makes a CA, a server and a client certificate with kvx
// tls in a temp dir (the working directory from then on) and starts a
// server on HTTPS alone that requires client certificates; abs names a
// file of the dir.
func startHTTPSServer(t *testing.T) (dir string, abs func(string) string, srv *servertest.Server) {
	dir = t.TempDir()
	t.Chdir(dir)
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server"}, {"tls", "cert", "create", "-client"}} {
		if _, errOut, code := run(t, t.Context(), args...); code != 0 {
			t.Fatalf("kvx %q: %s", args, errOut)
		}
	}
	abs = func(name string) string { return filepath.Join(dir, name) }
	srv = servertest.Start(t, func(o *server.Options) {
		o.HTTPAddr = server.HTTPDisabled
		o.HTTPSAddr = "127.0.0.1:0"
		o.TLS = server.TLSOptions{CertFile: abs("dc1-server-kvx-0.pem"), KeyFile: abs("dc1-server-kvx-0-key.pem"),
			CAFile: abs("kvx-agent-ca.pem"), VerifyIncoming: true}
	})
	return dir, abs, srv
}

// kvx's tools talk to an HTTPS server that requires client certificates,
// with certificates made by kvx tls, given as consul's environment
// variables or as flags.
func TestToolsTalkToAnHTTPSServer(t *testing.T) {
	dir, abs, srv := startHTTPSServer(t)
	src := writeFile(t, dir, "src", "10.0.0.1 a\n10.0.0.2 b\n")
	target := filepath.Join(dir, "target")
	t.Setenv("KVX_NODE", "test-node")

	// Consul's environment variables.
	t.Setenv("CONSUL_HTTP_ADDR", srv.HTTPSAddr())
	t.Setenv("CONSUL_HTTP_SSL", "true")
	t.Setenv("CONSUL_CACERT", abs("kvx-agent-ca.pem"))
	t.Setenv("CONSUL_CLIENT_CERT", abs("dc1-client-kvx-0.pem"))
	t.Setenv("CONSUL_CLIENT_KEY", abs("dc1-client-kvx-0-key.pem"))
	out, errOut, code := run(t, t.Context(), "in", "-k", "tls/hosts", "-f", src, "-l", "1")
	expect(t, "in over HTTPS", code, 0, out, errOut)
	out, errOut, code = run(t, t.Context(), "out", "-k", "tls/hosts", "-f", target, "-l", "1")
	expect(t, "out over HTTPS", code, 0, out, errOut)
	if b, err := os.ReadFile(target); err != nil || string(b) != "10.0.0.1 a\n10.0.0.2 b\n" {
		t.Fatalf("delivered %q, %v", b, err)
	}

	// Without a client certificate: refused, exit 1.
	t.Setenv("CONSUL_CLIENT_CERT", "")
	t.Setenv("CONSUL_CLIENT_KEY", "")
	out, errOut, code = run(t, t.Context(), "status", "-k", "tls/hosts")
	expect(t, "status without a client certificate", code, exitError, out, errOut, "certificate")

	// The consul CLI's flags, over no environment at all; an https:// address.
	for _, v := range []string{"CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL", "CONSUL_CACERT"} {
		t.Setenv(v, "")
	}
	out, errOut, code = run(t, t.Context(), "status", "-k", "tls/hosts", "-http-addr", "https://"+srv.HTTPSAddr(),
		"-ca-file", abs("kvx-agent-ca.pem"), "-client-cert", abs("dc1-client-kvx-0.pem"), "-client-key", abs("dc1-client-kvx-0-key.pem"),
		"-tls-server-name", "server.dc1.consul")
	expect(t, "status with -ca-file, -client-cert, -client-key, -tls-server-name", code, 0, out, errOut, "test-node")
	caDir := filepath.Join(dir, "cas")
	if err := os.Mkdir(caDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(abs("kvx-agent-ca.pem")); err != nil || os.WriteFile(filepath.Join(caDir, "ca.pem"), b, 0o644) != nil {
		t.Fatal(err)
	}
	out, errOut, code = run(t, t.Context(), "status", "-k", "tls/hosts", "-http-addr", "https://"+srv.HTTPSAddr(),
		"-ca-path", caDir, "-client-cert", abs("dc1-client-kvx-0.pem"), "-client-key", abs("dc1-client-kvx-0-key.pem"))
	expect(t, "status with -ca-path", code, 0, out, errOut, "test-node")
	// A server whose CA is not trusted is refused; CONSUL_HTTP_SSL_VERIFY=false skips the check.
	out, errOut, code = run(t, t.Context(), "status", "-k", "tls/hosts", "-http-addr", "https://"+srv.HTTPSAddr(),
		"-client-cert", abs("dc1-client-kvx-0.pem"), "-client-key", abs("dc1-client-kvx-0-key.pem"))
	expect(t, "status without the CA", code, exitError, out, errOut, "certificate")
	t.Setenv("CONSUL_HTTP_SSL_VERIFY", "false")
	out, errOut, code = run(t, t.Context(), "status", "-k", "tls/hosts", "-http-addr", "https://"+srv.HTTPSAddr(),
		"-client-cert", abs("dc1-client-kvx-0.pem"), "-client-key", abs("dc1-client-kvx-0-key.pem"))
	expect(t, "status with CONSUL_HTTP_SSL_VERIFY=false", code, 0, out, errOut, "test-node")
	// A CA file that does not exist is named.
	out, errOut, code = run(t, t.Context(), "status", "-k", "tls/hosts", "-http-addr", "https://"+srv.HTTPSAddr(),
		"-ca-file", abs("missing.pem"))
	if code == 0 || !strings.Contains(errOut, "missing.pem") {
		t.Fatalf("a missing -ca-file: exit %d, %q", code, errOut)
	}
}

// kvx render takes consul-template's consul { ssl { ... } } block.
func TestRenderTakesConsulTemplatesSSLBlock(t *testing.T) {
	dir, abs, srv := startHTTPSServer(t)
	c := httpsTestClient(t, srv.HTTPSAddr(), abs)
	if _, err := c.KV().Put(&kvPair{Key: "app/port", Value: []byte("8080")}, nil); err != nil {
		t.Fatal(err)
	}
	tmpl := writeFile(t, dir, "in.tmpl", `port={{ key "app/port" }}`)
	cfg := writeFile(t, dir, "c.hcl", `consul {
  address = "`+srv.HTTPSAddr()+`"
  ssl {
    enabled     = true
    verify      = true
    ca_cert     = "`+abs("kvx-agent-ca.pem")+`"
    cert        = "`+abs("dc1-client-kvx-0.pem")+`"
    key         = "`+abs("dc1-client-kvx-0-key.pem")+`"
    server_name = "server.dc1.consul"
  }
}
`)
	out, errOut, code := run(t, t.Context(), "render", "-once", "-config", cfg, "-template", tmpl+":"+abs("out"))
	expect(t, "render with the ssl block", code, 0, out, errOut)
	if b, err := os.ReadFile(abs("out")); err != nil || string(b) != "port=8080" {
		t.Fatalf("rendered %q, %v", b, err)
	}
}

func httpsTestClient(t *testing.T, addr string, abs func(string) string) *consulapi.Client {
	t.Helper()
	c, err := client.New(client.Options{Address: "https://" + addr, TLS: client.TLS{CAFile: abs("kvx-agent-ca.pem"),
		CertFile: abs("dc1-client-kvx-0.pem"), KeyFile: abs("dc1-client-kvx-0-key.pem")}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A real kvx server process rotates its certificate on SIGHUP: new files,
// the signal, and new connections get the new certificate.
func TestServerProcessRotatesCertificateOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end with real processes: skipped under -short")
	}
	bin := buildKVX(t)
	dir := t.TempDir()
	t.Chdir(dir)
	for _, args := range [][]string{{"tls", "ca", "create"}, {"tls", "cert", "create", "-server"}, {"tls", "cert", "create", "-server"}} {
		if _, errOut, code := run(t, t.Context(), args...); code != 0 {
			t.Fatalf("kvx %q: %s", args, errOut)
		}
	}
	abs := func(name string) string { return filepath.Join(dir, name) }
	// The server serves copies, which the rotation overwrites.
	cp := func(from, to string) {
		b, err := os.ReadFile(abs(from))
		if err != nil || os.WriteFile(abs(to), b, 0o600) != nil {
			t.Fatalf("copy %s: %v", from, err)
		}
	}
	cp("dc1-server-kvx-0.pem", "served.pem")
	cp("dc1-server-kvx-0-key.pem", "served-key.pem")
	httpsAddr := servertest.FreeAddr(t)
	p := startExactProc(t, bin, "server", "-dev", "-http-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0",
		"-https-addr", httpsAddr, "-tls-cert-file", abs("served.pem"), "-tls-key-file", abs("served-key.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, abs("kvx-agent-ca.pem")))
	served := func() string {
		c, err := tls.Dial("tcp", httpsAddr, &tls.Config{RootCAs: pool, ServerName: "server.dc1.consul"})
		if err != nil {
			t.Fatalf("dial %s: %v", httpsAddr, err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got, want := served(), readCert(t, abs("dc1-server-kvx-0.pem")).SerialNumber.String(); got != want {
		t.Fatalf("serves %s, want %s", got, want)
	}
	cp("dc1-server-kvx-1.pem", "served.pem")
	cp("dc1-server-kvx-1-key.pem", "served-key.pem")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	want := readCert(t, abs("dc1-server-kvx-1.pem")).SerialNumber.String()
	servertest.Eventually(t, "the new certificate served after SIGHUP", func() bool { return served() == want })
	servertest.Eventually(t, "the reload logged", func() bool { return strings.Contains(p.log.String(), "TLS certificates reloaded") })
	stopProc(t, p)
}

// TLS flags that cannot work together are usage errors, for the server and
// the agent, before anything is bound.
func TestTLSFlagUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"server", "-dev", "-http-addr", ""}, `-http-addr "" leaves no API: give -https-addr`},
		{[]string{"server", "-dev", "-https-addr", "127.0.0.1:0"}, "needs -tls-cert-file and -tls-key-file"},
		{[]string{"server", "-dev", "-tls-cert-file", "c.pem"}, "go together"},
		{[]string{"agent", "-join", "127.0.0.1:8500", "-http-addr", ""}, `leaves no API`},
		{[]string{"agent", "-join", "127.0.0.1:8500", "-tls-verify-incoming"}, "-tls-verify-incoming needs -https-addr and -tls-ca-file"},
	} {
		_, errOut, code := run(t, t.Context(), tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.msg) {
			t.Errorf("kvx %q: exit %d %q; want a usage error with %q", tc.args, code, errOut, tc.msg)
		}
	}
}
