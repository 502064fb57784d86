// Package client is the one place kvx builds a Consul API client. It honours
// Consul's own environment variables (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
// CONSUL_CACERT, CONSUL_HTTP_SSL, ...) exactly as the consul CLI does, through
// api.DefaultConfig, and lets flags override them.
//
// It must not hold state of its own or talk to anything but the API.
package client
