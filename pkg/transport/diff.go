package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	udiff "github.com/aymanbagabas/go-udiff"
)

const (
	// DefaultDiffMax caps the diff text of an event: Datadog truncates event
	// text at 4,000 characters, and a diff must never carry a whole file.
	DefaultDiffMax = 3000
	// diffInputMax: larger versions are summarised, not diffed.
	diffInputMax = 4 << 20
)

// diffText is the event text for a push: the unified diff against the
// previous version (headers dropped), capped at o.DiffMax on a line
// boundary. A first version, an unreadable previous one, binary content or
// content too large to diff is summarised in one line instead: the text
// never holds the whole file.
func (c *Client) diffText(ctx context.Context, prev *snapshot, o PushOptions) string {
	limit := o.DiffMax
	if limit <= 0 {
		limit = DefaultDiffMax
	}
	newLines := strings.Count(string(o.Content), "\n")
	if prev.checksum == nil {
		return fmt.Sprintf("New key: %d bytes, %d lines. No previous version to compare.", len(o.Content), newLines)
	}
	old, err := c.content(ctx, prev)
	if err != nil {
		return fmt.Sprintf("Previous version unreadable (%v); new version: %d bytes, %d lines.", err, len(o.Content), newLines)
	}
	if len(old) > diffInputMax || len(o.Content) > diffInputMax || binary(old) || binary(o.Content) {
		return fmt.Sprintf("Changed from %d bytes to %d bytes (too large or binary to diff).", len(old), len(o.Content))
	}
	d := udiff.Unified("a", "b", string(old), string(o.Content))
	// Drop the ---/+++ header: the event title names the key.
	for range 2 {
		if _, rest, ok := strings.Cut(d, "\n"); ok && (strings.HasPrefix(d, "---") || strings.HasPrefix(d, "+++")) {
			d = rest
		}
	}
	return capLines(d, limit)
}

// capLines cuts s to at most limit bytes at a line end, saying how much was
// left out.
func capLines(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := strings.LastIndexByte(s[:limit], '\n') + 1
	return s[:cut] + fmt.Sprintf("[diff truncated: %d more bytes]\n", len(s)-cut)
}

func binary(b []byte) bool { return bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0 }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// report sends the metrics every command sends: a count named after the
// direction (kvx.in, kvx.out), kvx.bytes and kvx.lines gauges, and
// kvx.time.
func (c *Client) report(direction, key string, bytes, lines int, took time.Duration, result string) {
	tags := []string{"key:" + key, "direction:" + direction, "result:" + result, "host:" + c.Node}
	m := c.sink()
	m.Count(direction, 1, tags...)
	if bytes > 0 || result == ResultUploaded || result == ResultDelivered {
		m.Gauge("bytes", float64(bytes), tags...)
		m.Gauge("lines", float64(lines), tags...)
	}
	m.Timing("time", took, tags...)
}
