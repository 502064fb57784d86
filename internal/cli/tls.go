package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/tlsutil"
)

// kvx tls writes a CA and certificates as `consul tls` does, in the
// current directory, with kvx in the file names where consul has its
// domain.
const (
	tlsCAFile    = "kvx-agent-ca.pem"
	tlsCAKeyFile = "kvx-agent-ca-key.pem"
)

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Create a CA and certificates for TLS between servers, agents and clients",
		Args:  cobra.NoArgs,
	}
	ca := &cobra.Command{Use: "ca", Short: "Manage the CA", Args: cobra.NoArgs}
	ca.AddCommand(newTLSCACreateCmd())
	cert := &cobra.Command{Use: "cert", Short: "Manage certificates", Args: cobra.NoArgs}
	cert.AddCommand(newTLSCertCreateCmd())
	cmd.AddCommand(ca, cert)
	return cmd
}

func newTLSCACreateCmd() *cobra.Command {
	var o tlsutil.CAOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a CA: " + tlsCAFile + " and " + tlsCAKeyFile + " in the current directory",
		Long: `Create a self-signed CA (ECDSA P-256) in the current directory: ` + tlsCAFile + `
and its key ` + tlsCAKeyFile + ` (mode 0600). Existing files are never overwritten.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Days <= 0 {
				return usageError{fmt.Errorf("-days %d: must be positive", o.Days)}
			}
			for _, f := range []string{tlsCAFile, tlsCAKeyFile} {
				if _, err := os.Stat(f); err == nil {
					return fmt.Errorf("%s exists: remove it, or use it as it is", f)
				}
			}
			certPEM, keyPEM, err := tlsutil.NewCA(o)
			if err != nil {
				return err
			}
			return writeNewFiles(cmd.OutOrStdout(), tlsCAFile, certPEM, tlsCAKeyFile, keyPEM)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Days, "days", 1825, "days the CA is valid for")
	f.StringVar(&o.Domain, "domain", tlsutil.DefaultDomain, "domain of the server names, for -name-constraint")
	f.StringVar(&o.CommonName, "common-name", "", "common name of the CA (default: Kvx Agent CA <serial>)")
	f.BoolVar(&o.NameConstraint, "name-constraint", false, "restrict the CA to names under -domain and localhost")
	return cmd
}

type tlsCertOptions struct {
	caFile, keyFile string
	server, client  bool
	dc, domain      string
	node            string
	days            int
	dnsNames        []string
	ips             []string
}

func newTLSCertCreateCmd() *cobra.Command {
	o := &tlsCertOptions{}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a server or client certificate signed by the CA",
		Long: `Create a certificate (ECDSA P-256) signed by the CA, in the current
directory: -server writes <dc>-server-kvx-<n>.pem and <dc>-server-kvx-<n>-key.pem
for server.<dc>.<domain>, -client writes <dc>-client-kvx-<n>.pem and its key for
client.<dc>.<domain>; both also name localhost and 127.0.0.1. <n> is the first
index whose files do not exist yet. A server certificate lets its holder join
the cluster and read everything: give it to servers only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTLSCertCreate(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.caFile, "ca", tlsCAFile, "the CA's certificate")
	f.StringVar(&o.keyFile, "key", tlsCAKeyFile, "the CA's key")
	f.BoolVar(&o.server, "server", false, "a server certificate (server.<dc>.<domain>)")
	f.BoolVar(&o.client, "client", false, "a client certificate (client.<dc>.<domain>), for agents and tools")
	f.StringVar(&o.dc, "dc", "dc1", "datacenter of the name")
	f.StringVar(&o.domain, "domain", tlsutil.DefaultDomain, "domain of the name")
	f.StringVar(&o.node, "node", "", "with -server, also name <node>.server.<dc>.<domain>")
	f.IntVar(&o.days, "days", 365, "days the certificate is valid for")
	f.StringSliceVar(&o.dnsNames, "additional-dnsname", nil, "another DNS name for the certificate (repeatable)")
	f.StringSliceVar(&o.ips, "additional-ipaddress", nil, "another IP address for the certificate (repeatable)")
	return cmd
}

func runTLSCertCreate(cmd *cobra.Command, o *tlsCertOptions) error {
	if o.server == o.client {
		return usageError{errors.New("give either -server or -client")}
	}
	if o.node != "" && !o.server {
		return usageError{errors.New("-node needs -server")}
	}
	if o.days <= 0 {
		return usageError{fmt.Errorf("-days %d: must be positive", o.days)}
	}
	if o.dc == "" || o.domain == "" {
		return usageError{errors.New("-dc and -domain must not be empty")}
	}
	var ips []net.IP
	for _, s := range o.ips {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return usageError{fmt.Errorf("-additional-ipaddress %q: not an IP address", s)}
		}
		ips = append(ips, ip)
	}
	kind := "client"
	if o.server {
		kind = "server"
	}
	name := kind + "." + o.dc + "." + o.domain
	var dns []string
	for _, d := range o.dnsNames {
		if d = strings.TrimSpace(d); d != "" {
			dns = append(dns, d)
		}
	}
	if o.node != "" {
		dns = append(dns, o.node+"."+name)
	}
	dns = append(dns, name, "localhost")
	ips = append(ips, net.IPv4(127, 0, 0, 1))
	caPEM, err := os.ReadFile(o.caFile)
	if err != nil {
		return fmt.Errorf("read the CA: %w (kvx tls ca create makes one)", err)
	}
	caKey, err := os.ReadFile(o.keyFile)
	if err != nil {
		return fmt.Errorf("read the CA key: %w", err)
	}
	prefix := o.dc + "-" + kind + "-kvx"
	var certFile, keyFile string
	for i := 0; ; i++ {
		certFile, keyFile = fmt.Sprintf("%s-%d.pem", prefix, i), fmt.Sprintf("%s-%d-key.pem", prefix, i)
		if !exists(certFile) && !exists(keyFile) {
			break
		}
	}
	certPEM, keyPEM, err := tlsutil.NewCert(tlsutil.CertOptions{CACert: caPEM, CAKey: caKey, Name: name, DNSNames: dns, IPAddresses: ips, Days: o.days})
	if err != nil {
		return fmt.Errorf("%s, %s: %w", o.caFile, o.keyFile, err)
	}
	out := cmd.OutOrStdout()
	if o.server {
		fmt.Fprintln(out, "==> A server certificate lets its holder join the cluster and read all of its state: give it to servers only.")
	}
	fmt.Fprintf(out, "==> Using %s and %s\n", o.caFile, o.keyFile)
	return writeNewFiles(out, certFile, certPEM, keyFile, keyPEM)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// writeNewFiles writes a certificate (0644) and its key (0600), neither of
// which may exist.
func writeNewFiles(out io.Writer, certFile string, certPEM []byte, keyFile string, keyPEM []byte) error {
	for _, f := range []struct {
		name string
		b    []byte
		mode os.FileMode
	}{{certFile, certPEM, 0o644}, {keyFile, keyPEM, 0o600}} {
		fh, err := os.OpenFile(f.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return err
		}
		if _, err := fh.Write(f.b); err != nil {
			fh.Close()
			return fmt.Errorf("write %s: %w", f.name, err)
		}
		if err := fh.Close(); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
		fmt.Fprintf(out, "==> Saved %s\n", f.name)
	}
	return nil
}
