// Package tlsutil is kvx's TLS: the CA and certificates `kvx tls` writes
// (ECDSA P-256, named and shaped as `consul tls` makes them), and the
// certificate store servers and agents serve from, which a SIGHUP reloads
// without a restart.
//
// A Store holds one certificate, its key and the CA pool, swapped
// atomically by Reload; every TLS config it hands out reads the current
// ones at each handshake (GetConfigForClient, GetClientCertificate), so a
// reload applies to the next connection and never cuts an open one.
//
// Servers talk to each other over mutual TLS, each side checking that the
// other's certificate is signed by the CA and names server.<dc>.<domain>,
// as Consul's verify_server_hostname: a client certificate of the same CA
// cannot stand in for a server.
package tlsutil
