package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNotRegular is matched (errors.Is) by a *TypeError.
var ErrNotRegular = errors.New("not a regular file")

// TypeError refuses a target that is not a regular file: a device, a FIFO,
// a socket, a directory, or a symbolic link not to be followed. Nothing
// under the path was opened, read or written.
type TypeError struct {
	Path string
	Type string // "character device", "FIFO", "symbolic link", ...
	Link string // for a symbolic link: where it points
}

func (e *TypeError) Error() string {
	if e.Link != "" {
		return fmt.Sprintf("%s is a %s to %s, not a regular file (symbolic links are followed only when asked)", e.Path, e.Type, e.Link)
	}
	return fmt.Sprintf("%s is a %s, not a regular file", e.Path, e.Type)
}

func (e *TypeError) Is(target error) bool { return target == ErrNotRegular }

// maxLinks bounds a chain of symbolic links, as the kernel's ELOOP does.
const maxLinks = 40

// Resolve says which path a write to path must replace, looking at the
// target's type with Lstat before anything is opened: path itself when it
// is a regular file or missing; with follow, the final target of a
// symbolic link (replaced in its own directory, the link kept), which may
// itself be missing; otherwise a *TypeError. Other Lstat errors (a
// permission denied, a parent that is a file) are returned as they are.
func Resolve(path string, follow bool) (string, error) {
	orig := path
	for hops := 0; ; hops++ {
		fi, err := os.Lstat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return path, nil
		case err != nil:
			return "", err
		case fi.Mode().IsRegular():
			return path, nil
		case fi.Mode()&fs.ModeSymlink == 0:
			return "", &TypeError{Path: orig, Type: typeName(fi.Mode())}
		}
		dest, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !follow {
			return "", &TypeError{Path: orig, Type: typeName(fi.Mode()), Link: dest}
		}
		if hops >= maxLinks {
			return "", fmt.Errorf("%s: more than %d symbolic links in a row", orig, maxLinks)
		}
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(filepath.Dir(path), dest)
		}
		path = dest
	}
}

// Open opens path for reading only if it is a regular file, looked at with
// Lstat first: a symbolic link is not followed, and nothing else is opened.
// The open itself does not follow links and does not block, and the file
// is checked again once open, so a FIFO or device swapped in meanwhile is
// neither waited on nor read. A missing file gives an error matching
// fs.ErrNotExist.
func Open(path string) (*os.File, error) { return open(path, os.O_RDONLY) }

// OpenWrite is Open for writing (O_WRONLY, plus flag: os.O_APPEND for one),
// with the same checks.
func OpenWrite(path string, flag int) (*os.File, error) { return open(path, os.O_WRONLY|flag) }

func open(path string, flag int) (*os.File, error) {
	if _, err := Resolve(path, false); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if _, rerr := Resolve(path, false); rerr != nil {
			err = rerr // swapped: say what it is now
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &TypeError{Path: path, Type: typeName(fi.Mode())}
	}
	return f, nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO (named pipe)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}
