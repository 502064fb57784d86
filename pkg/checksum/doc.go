// Package checksum owns the digests kvx puts next to every file it moves:
// lowercase hex SHA-256 of the uncompressed content, and the line count the
// -l guard compares. It is a leaf: it imports nothing of kvx and does no I/O
// beyond the reader it is handed.
package checksum
