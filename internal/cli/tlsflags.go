package cli

import (
	"github.com/spf13/pflag"

	"github.com/kvxproject/kvx/pkg/client"
)

// tlsClientFlags are the consul CLI's HTTPS client flags, which override
// CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY and
// CONSUL_TLS_SERVER_NAME. HTTPS itself is an https:// -http-addr or
// CONSUL_HTTP_SSL=true, as with consul.
type tlsClientFlags struct {
	caFile, caPath, clientCert, clientKey, serverName string
}

// register adds the flags a command does not have already (git2kv's
// -ca-file is its git remote's CA).
func (t *tlsClientFlags) register(f *pflag.FlagSet) {
	for _, fl := range []struct {
		p          *string
		name, help string
	}{
		{&t.caFile, "ca-file", "CA certificate to check an HTTPS server with (default: CONSUL_CACERT)"},
		{&t.caPath, "ca-path", "directory of CA certificates to check an HTTPS server with (default: CONSUL_CAPATH)"},
		{&t.clientCert, "client-cert", "client certificate for a server that requires one (default: CONSUL_CLIENT_CERT)"},
		{&t.clientKey, "client-key", "key of -client-cert (default: CONSUL_CLIENT_KEY)"},
		{&t.serverName, "tls-server-name", "name to check in the server's certificate (default: CONSUL_TLS_SERVER_NAME, else the address's host)"},
	} {
		if f.Lookup(fl.name) == nil {
			f.StringVar(fl.p, fl.name, "", fl.help)
		}
	}
}

func (t *tlsClientFlags) options() client.TLS {
	return client.TLS{CAFile: t.caFile, CAPath: t.caPath, CertFile: t.clientCert, KeyFile: t.clientKey, ServerName: t.serverName}
}
