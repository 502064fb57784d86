// Package servertest starts a real in-process kvx server on 127.0.0.1 with
// ephemeral ports for other packages' tests, and hands back a Consul API
// client pointed at it. The server is stopped by t.Cleanup.
//
// It is for tests only and must not be imported by non-test code.
package servertest
