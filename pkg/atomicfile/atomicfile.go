package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
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
func Write(path string, data []byte, o Options) (Result, error) {
	if same, err := holds(path, data); err != nil {
		return Result{}, err
	} else if same {
		fixed, err := Fix(path, o)
		return Result{Fixed: fixed}, err
	}
	return Result{Written: true}, Replace(path, data, o)
}

// Replace writes data to path without comparing: for a caller that already
// knows the content differs (kvx out compares checksums). It is Write's
// second half: temp file, write, mode and owner, fsync, rename.
//
// The directory is not fsynced after the rename: a crash right after it
// may bring back the old file (never a partial one, the data was synced
// before the rename), and kvx out, which re-checks on start, delivers again.
func Replace(path string, data []byte, o Options) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".kvx-*")
	if errors.Is(err, fs.ErrNotExist) { // parents are created only when missing
		dirMode := o.DirMode
		if dirMode == 0 {
			dirMode = 0o755
		}
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
		tmp, err = os.CreateTemp(dir, "."+filepath.Base(path)+".kvx-*")
	}
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(o.mode()); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if o.SetOwner {
		if err := tmp.Chown(o.UID, o.GID); err != nil {
			return fmt.Errorf("chown %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	committed = true
	return nil
}

// holds reports whether path is a regular file whose content is data.
func holds(path string, data []byte) (bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.IsDir():
		return false, fmt.Errorf("%s is a directory", path)
	case fi.Size() != int64(len(data)):
		return false, nil
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return bytes.Equal(cur, data), nil
}

// Fix puts back a drifted mode or owner of an existing file and reports
// whether it had to.
func Fix(path string, o Options) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	fixed := false
	if fi.Mode().Perm() != o.mode() {
		if err := os.Chmod(path, o.mode()); err != nil {
			return false, fmt.Errorf("chmod %s: %w", path, err)
		}
		fixed = true
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && o.SetOwner && (o.UID >= 0 && int(st.Uid) != o.UID || o.GID >= 0 && int(st.Gid) != o.GID) {
		if err := os.Chown(path, o.UID, o.GID); err != nil {
			return false, fmt.Errorf("chown %s: %w", path, err)
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
