// Package atomicfile owns how kvx puts a file in place: write-if-changed,
// a temp file in the target's directory, mode and owner, fsync, rename, so
// a reader sees the old file or the new one and never a part. It also owns
// the rule of what may be written at all: only a regular file (or a missing
// one); a device, FIFO, socket or directory is refused with a *TypeError
// before anything under the path is opened, and so is a symbolic link
// unless the caller asks to follow it (then its final target is replaced
// in that target's directory and the link kept). Every kvx tool that
// writes files goes through this package, so the rule is in one place. It is a leaf:
// it imports nothing of kvx and knows nothing of KV, checksums or commands.
package atomicfile
