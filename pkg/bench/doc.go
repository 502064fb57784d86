// Package bench measures any Consul-compatible server from outside, over its
// HTTP API, so the same run can be pointed at kvx or at Consul for a
// side-by-side figure.
//
// Each worker holds one keep-alive connection and speaks plain HTTP/1.1 on
// it, so the client costs as little CPU as possible and the figure is the
// server's. It must not import the server.
package bench
