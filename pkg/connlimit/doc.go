// Package connlimit caps the connections one client IP address may hold
// open on a listener, as Consul's limits.http_max_conns_per_client: a
// connection over the cap is closed as soon as it is accepted, and logged
// (at most once a minute per address), so one client cannot take every
// file descriptor of a server or an agent. It wraps the TCP listener,
// before TLS, so a refused connection costs no handshake.
package connlimit
