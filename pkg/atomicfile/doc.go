// Package atomicfile owns how kvx puts a file in place: write-if-changed,
// a temp file in the target's directory, mode and owner, fsync, rename, so
// a reader sees the old file or the new one and never a part. It is a leaf:
// it imports nothing of kvx and knows nothing of KV, checksums or commands.
package atomicfile
