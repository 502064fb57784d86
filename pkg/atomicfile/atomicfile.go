package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// Options say how the file must end up.
type Options struct {
	Mode     fs.FileMode // permission bits of the file; 0 means 0644
	SetOwner bool        // apply UID and GID; otherwise the owner is the writing process
	UID, GID int         // with SetOwner; -1 leaves that one as is
	DirMode  fs.FileMode // for parent directories created; 0 means 0755
	// FollowSymlinks writes through a symbolic link: its final target is
	// replaced atomically in the target's own directory and the link kept.
	// Without it a symbolic link is refused, like any file that is not
	// regular.
	FollowSymlinks bool
	// InPlaceFallback writes the content into the target in place when the
	// rename cannot replace it (a bind-mounted file: EBUSY, EXDEV).
	InPlaceFallback bool
}

// Result says what Write did.
type Result struct {
	Written bool // the content was replaced (or the file created)
	Fixed   bool // content was already right; mode or owner was put back
}

func (o Options) mode() fs.FileMode {
	if o.Mode == 0 {
		return 0o644
	}
	return o.Mode.Perm()
}

// Write makes path hold data with the options' mode and owner. When the file
// already holds data it is not rewritten; a drifted mode or owner is put
// back. Otherwise data goes to a temp file in the same directory, which is
// given its mode and owner, fsynced and renamed over path (see Replace). On
// any error path is untouched and no temp file is left.
//
// Only a regular file (or a missing one) is written, and nothing else under
// path is opened: a device, FIFO, socket or directory is refused with a
// *TypeError, and so is a symbolic link unless FollowSymlinks is set, in
// which case the link's final target is replaced and the link kept.
func Write(path string, data []byte, o Options) (Result, error) {
	target, err := Resolve(path, o.FollowSymlinks)
	if err != nil {
		return Result{}, err
	}
	if same, err := holds(target, data); err != nil {
		return Result{}, err
	} else if same {
		fixed, err := fix(target, o)
		return Result{Fixed: fixed}, err
	}
	return Result{Written: true}, replace(target, data, o)
}

// Replace writes data to path without comparing: for a caller that already
// knows the content differs (kvx out compares checksums). It is Write's
// second half: the type check, then temp file, write, mode and owner,
// fsync, rename.
//
// The directory is not fsynced after the rename: a crash right after it
// may bring back the old file (never a partial one, the data was synced
// before the rename), and kvx out, which re-checks on start, delivers again.
func Replace(path string, data []byte, o Options) error {
	target, err := Resolve(path, o.FollowSymlinks)
	if err != nil {
		return err
	}
	return replace(target, data, o)
}

// ReplaceResolved is Replace on a target Resolve returned (with the same
// FollowSymlinks): the path is not resolved a second time. The rename is
// still preceded by a check that the target has not become something other
// than a regular file meanwhile.
func ReplaceResolved(target string, data []byte, o Options) error {
	return replace(target, data, o)
}

// replace is Replace on a path Resolve returned.
func replace(path string, data []byte, o Options) error {
	st, err := stage(path, data, o)
	if err != nil {
		return err
	}
	_, err = st.Commit()
	return err
}

// Staged is data written, synced and given its mode and owner in a temp file
// beside its target, not yet in place: a caller can check it (render's
// -check runs a command on Path) before Commit puts it in place, or Abort
// removes it.
type Staged struct {
	target, tmp string
	o           Options
	done        bool
}

// Stage writes data to a temp file beside path (path resolved as Write
// does: only a regular or missing file, links only when followed).
func Stage(path string, data []byte, o Options) (*Staged, error) {
	target, err := Resolve(path, o.FollowSymlinks)
	if err != nil {
		return nil, err
	}
	return stage(target, data, o)
}

// Path is the staged temp file's path.
func (s *Staged) Path() string { return s.tmp }

// Abort removes the staged file; the target is untouched.
func (s *Staged) Abort() {
	if !s.done {
		s.done = true
		os.Remove(s.tmp)
	}
}

// Commit renames the staged file over its target. When the rename is
// refused because the target is a mount point of its own (EBUSY: a file
// bind-mounted into a container) or on another device (EXDEV) and
// InPlaceFallback is set, the content is written into the target in place
// (truncate, write, fsync) instead, and inPlace is true: not atomic, so the
// caller warns.
func (s *Staged) Commit() (inPlace bool, err error) {
	if s.done {
		return false, fmt.Errorf("replace %s: already committed or aborted", s.target)
	}
	defer s.Abort()
	// A target swapped for a special file since Resolve is not replaced.
	if fi, err := os.Lstat(s.target); err == nil && !fi.Mode().IsRegular() {
		return false, &TypeError{Path: s.target, Type: typeName(fi.Mode())}
	}
	err = os.Rename(s.tmp, s.target)
	if err == nil {
		s.done = true
		return false, nil
	}
	if !s.o.InPlaceFallback || !(errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EXDEV)) {
		return false, err // "rename TMP PATH: ..."
	}
	data, rerr := os.ReadFile(s.tmp)
	if rerr != nil {
		return false, rerr
	}
	f, oerr := OpenWrite(s.target, 0)
	if oerr != nil {
		return false, fmt.Errorf("write %s in place after %v: %w", s.target, err, oerr)
	}
	defer f.Close()
	if err := f.Truncate(0); err != nil {
		return false, fmt.Errorf("write %s in place: %w", s.target, err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return false, fmt.Errorf("write %s in place: %w", s.target, err)
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("write %s in place: %w", s.target, err)
	}
	return true, f.Close()
}

// stage is Stage on a path Resolve returned.
func stage(path string, data []byte, o Options) (*Staged, error) {
	dir := filepath.Dir(path)
	tmp, err := createTemp(dir, "."+filepath.Base(path)+".kvx-")
	if errors.Is(err, fs.ErrNotExist) { // parents are created only when missing
		dirMode := o.DirMode
		if dirMode == 0 {
			dirMode = 0o755
		}
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return nil, err // "mkdir DIR: ..."
		}
		tmp, err = createTemp(dir, "."+filepath.Base(path)+".kvx-")
	}
	if err != nil {
		return nil, fmt.Errorf("replace %s: %w", path, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Errors of the temp file's own operations name it and the operation
	// ("chown /etc/.hosts.kvx-123: operation not permitted"); the wrap adds
	// the target, once.
	if _, err := tmp.Write(data); err != nil {
		return nil, fmt.Errorf("replace %s: %w", path, err)
	}
	if err := tmp.Chmod(o.mode()); err != nil {
		return nil, fmt.Errorf("replace %s: %w", path, err)
	}
	if o.SetOwner {
		if err := tmp.Chown(o.UID, o.GID); err != nil {
			return nil, fmt.Errorf("replace %s: %w", path, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("replace %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("replace %s: %w", path, err)
	}
	committed = true
	return &Staged{target: path, tmp: tmp.Name(), o: o}, nil
}

// holds reports whether path (a regular file or missing) has content data.
func holds(path string, data []byte) (bool, error) {
	f, err := Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() != int64(len(data)) {
		return false, err
	}
	cur := make([]byte, len(data)+1) // one more: a file that grew meanwhile
	n, err := io.ReadFull(f, cur)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	return n == len(data) && bytes.Equal(cur[:n], data), nil
}

// Fix puts back a drifted mode or owner of an existing file and reports
// whether it had to. The type rule of Write applies.
func Fix(path string, o Options) (bool, error) {
	target, err := Resolve(path, o.FollowSymlinks)
	if err != nil {
		return false, err
	}
	return fix(target, o)
}

func fix(path string, o Options) (bool, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, &TypeError{Path: path, Type: typeName(fi.Mode())}
	}
	fixed := false
	if fi.Mode().Perm() != o.mode() {
		if err := os.Chmod(path, o.mode()); err != nil {
			return false, err // "chmod PATH: ..."
		}
		fixed = true
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && o.SetOwner && (o.UID >= 0 && int(st.Uid) != o.UID || o.GID >= 0 && int(st.Gid) != o.GID) {
		if err := os.Lchown(path, o.UID, o.GID); err != nil {
			return false, err // "lchown PATH: ..."
		}
		fixed = true
	}
	return fixed, nil
}

// Owner resolves a user and a group, each a name or a number, to the UID
// and GID Options want; an empty string gives -1 (leave that one as is).
func Owner(owner, group string) (uid, gid int, err error) {
	uid, gid = -1, -1
	if owner != "" {
		if uid, err = strconv.Atoi(owner); err != nil {
			u, lerr := user.Lookup(owner)
			if lerr != nil {
				return -1, -1, fmt.Errorf("owner %q: %w", owner, lerr)
			}
			uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if group != "" {
		if gid, err = strconv.Atoi(group); err != nil {
			g, lerr := user.LookupGroup(group)
			if lerr != nil {
				return -1, -1, fmt.Errorf("group %q: %w", group, lerr)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return uid, gid, nil
}
