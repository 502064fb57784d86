// Package transport owns the kvx in/out protocol on top of Consul's KV API:
// the layout of a key (<prefix>/<key>/data, checksum, stop, updated,
// chunks/, nodes/<node>, and <prefix>/locks/ for per-node freezes), the
// codecs and the KV flags that mark them, chunking past the inline limit,
// the one transaction that flips a version (and records the push),
// verification on the way out, delivery to a file with a command after it,
// acknowledgements, and reading them back: status, and waiting until
// enough nodes have a version.
//
// It talks to a server only through the KV interface, which *api.KV
// satisfies; it never builds a client (pkg/client does) and never parses
// flags (internal/cli does).
package transport
