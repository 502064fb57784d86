package checks

import (
	"fmt"
	"unicode/utf8"
)

// DefaultOutputMaxSize caps a check's output, as Consul's default.
const DefaultOutputMaxSize = 4 * 1024

// tailBuffer is an io.Writer that keeps the last size bytes written and
// counts them all, as Consul's circular buffer does.
type tailBuffer struct {
	size  int
	buf   []byte
	total int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.total += int64(len(p))
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*b.size+1024 {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.size:]...)
	}
	return len(p), nil
}

// tail is the last n bytes kept, starting at a rune boundary.
func (b *tailBuffer) tail(n int) string {
	n = min(n, b.size, len(b.buf))
	if n <= 0 {
		return ""
	}
	s := b.buf[len(b.buf)-n:]
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return string(s)
}

// scriptOutput is a script's captured output within max bytes, marked as
// Consul marks a truncated one.
func scriptOutput(b *tailBuffer, limit int) string {
	if b.total <= int64(limit) && len(b.buf) <= limit {
		return string(b.buf)
	}
	head := fmt.Sprintf("Captured %d of %d bytes\n...\n", limit, b.total)
	keep := max(limit-len(head), 0)
	head = fmt.Sprintf("Captured %d of %d bytes\n...\n", keep, b.total)
	return head + b.tail(keep)
}

// truncateHead cuts s to at most max bytes, at a rune boundary.
func truncateHead(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	if limit <= 0 {
		return ""
	}
	s = s[:limit]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// ttlOutput caps an output set through the API, as Consul's TTL check does.
func ttlOutput(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	suffix := fmt.Sprintf(" ... (captured %d of %d bytes)", limit, len(s))
	keep := max(limit-len(suffix), 0)
	suffix = fmt.Sprintf(" ... (captured %d of %d bytes)", keep, len(s))
	return truncateHead(s, keep) + suffix
}
