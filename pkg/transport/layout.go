package transport

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Default prefixes: kvx's own, and kvexpress's, whose layout kvx reads and
// writes so a fleet can switch without touching its watches.
const (
	DefaultPrefix   = "kvx"
	KvexpressPrefix = "kvexpress"
)

// Layout names the keys of one file under a prefix.
type Layout struct {
	Prefix string
	Key    string
}

// NewLayout checks prefix and key and returns their layout. A leading or
// trailing slash is dropped (kvexpress accepted "/kvexpress").
func NewLayout(prefix, key string) (Layout, error) {
	prefix = strings.Trim(prefix, "/")
	key = strings.Trim(key, "/")
	if err := validPath("prefix", prefix); err != nil {
		return Layout{}, err
	}
	if err := validPath("key", key); err != nil {
		return Layout{}, err
	}
	return Layout{Prefix: prefix, Key: key}, nil
}

func validPath(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	for _, part := range strings.Split(s, "/") {
		switch part {
		case "":
			return fmt.Errorf("%s %q has an empty path segment", what, s)
		case ".", "..":
			return fmt.Errorf("%s %q has a %q segment", what, s, part)
		}
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%s %q contains white space", what, s)
	}
	return nil
}

// Kvexpress reports whether the layout is kvexpress's, whose readers know
// neither chunks nor the gzip and zstd flags.
func (l Layout) Kvexpress() bool { return l.Prefix == KvexpressPrefix }

func (l Layout) base() string { return l.Prefix + "/" + l.Key + "/" }

// Data is the key holding the content (or a chunk manifest).
func (l Layout) Data() string { return l.base() + "data" }

// Checksum is the key every node watches: hex SHA-256 of the content.
func (l Layout) Checksum() string { return l.base() + "checksum" }

// Stop is the fleet-wide freeze: while it exists, in and out refuse.
func (l Layout) Stop() string { return l.base() + "stop" }

// Updated records the last push (time, node) and the versions before it,
// written in the flip's transaction; kvx status reads it to say how long a
// node has been behind.
func (l Layout) Updated() string { return l.base() + "updated" }

// Chunks is the folder of content-addressed chunks.
func (l Layout) Chunks() string { return l.base() + "chunks/" }

// Chunk is the key of the chunk whose stored bytes hash to sum.
func (l Layout) Chunk(sum string) string { return l.Chunks() + sum }

// Nodes is the folder of acknowledgements.
func (l Layout) Nodes() string { return l.base() + "nodes/" }

// Node is the acknowledgement of one node.
func (l Layout) Node(node string) string { return l.Nodes() + node }

// Locks is the folder of every per-node freeze under prefix.
func Locks(prefix string) string { return strings.Trim(prefix, "/") + "/locks/" }

// Lock is the per-node freeze of a target file, kvexpress's
// <prefix>/locks/<sha256 of the path>/<node>. path must be absolute.
func Lock(prefix, path, node string) string {
	sum := sha256.Sum256([]byte(path))
	return Locks(prefix) + hex.EncodeToString(sum[:]) + "/" + node
}
