package checksum

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// Size is the length of a checksum string: 64 hex digits.
const Size = 2 * sha256.Size

// ErrMismatch is wrapped by Verify's error when content and checksum differ.
var ErrMismatch = errors.New("checksum mismatch")

// Of returns the lowercase hex SHA-256 of b.
func Of(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// OfString returns the lowercase hex SHA-256 of s.
func OfString(s string) string { return Of([]byte(s)) }

// OfFile returns the checksum of the file at path. A missing file returns an
// error that satisfies errors.Is(err, fs.ErrNotExist).
func OfFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return OfReader(f)
}

// OfReader returns the checksum of everything r holds. The error of a read
// is returned as it is (an *os.File's names the file).
func OfReader(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Valid reports whether s has the form of a checksum: 64 lowercase hex digits.
func Valid(s string) bool {
	if len(s) != Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Verify returns nil when b hashes to want, and an error wrapping
// ErrMismatch that names both digests otherwise.
func Verify(b []byte, want string) error {
	if got := Of(b); got != want {
		return fmt.Errorf("%w: content hashes to %s, checksum says %s", ErrMismatch, got, want)
	}
	return nil
}

// Lines counts lines the way a reader of the file would: the number of
// newlines, plus one for a last line without a final newline. Empty content
// has zero lines (kvexpress counted it as one, which let -l 1 pass an empty
// file).
func Lines(b []byte) int {
	n := bytes.Count(b, []byte{'\n'})
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	return n
}
