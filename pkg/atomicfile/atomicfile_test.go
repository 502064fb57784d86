package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b", "hosts")
	res, err := Write(path, []byte("one\n"), Options{Mode: 0o640})
	if err != nil || !res.Written {
		t.Fatalf("first write: %+v, %v", res, err)
	}
	assertFile(t, path, "one\n", 0o640)
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o755 {
		t.Errorf("parent dir mode %v, want 0755", fi.Mode().Perm())
	}
	res, err = Write(path, []byte("two\n"), Options{Mode: 0o640})
	if err != nil || !res.Written {
		t.Fatalf("second write: %+v, %v", res, err)
	}
	assertFile(t, path, "two\n", 0o640)
	noTemps(t, filepath.Dir(path))
}

func TestWriteUnchangedFixesMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if _, err := Write(path, []byte("x\n"), Options{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	res, err := Write(path, []byte("x\n"), Options{Mode: 0o600})
	if err != nil || res.Written || res.Fixed {
		t.Fatalf("same content: %+v, %v; want nothing done", res, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	res, err = Write(path, []byte("x\n"), Options{Mode: 0o600})
	if err != nil || res.Written || !res.Fixed {
		t.Fatalf("drifted mode: %+v, %v; want Fixed only", res, err)
	}
	assertFile(t, path, "x\n", 0o600)
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("an unchanged file was replaced")
	}
}

func TestWriteOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root") // CI runs as root
	}
	path := filepath.Join(t.TempDir(), "f")
	uid, gid, err := Owner("65534", "65534")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Mode: 0o644, SetOwner: true, UID: uid, GID: gid}
	if _, err := Write(path, []byte("x\n"), o); err != nil {
		t.Fatal(err)
	}
	assertOwner(t, path, 65534, 65534)
	if err := os.Chown(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	res, err := Write(path, []byte("x\n"), o)
	if err != nil || !res.Fixed {
		t.Fatalf("drifted owner: %+v, %v", res, err)
	}
	assertOwner(t, path, 65534, 65534)
}

func TestOwnerNames(t *testing.T) {
	uid, gid, err := Owner("root", "root")
	if err != nil || uid != 0 || gid != 0 {
		t.Fatalf("Owner(root, root) = %d, %d, %v", uid, gid, err)
	}
	if uid, gid, err := Owner("", ""); err != nil || uid != -1 || gid != -1 {
		t.Fatalf("Owner(empty) = %d, %d, %v", uid, gid, err)
	}
	if _, _, err := Owner("no-such-user-kvx", ""); err == nil || !strings.Contains(err.Error(), "no-such-user-kvx") {
		t.Fatalf("unknown user: %v", err)
	}
	if _, _, err := Owner("", "no-such-group-kvx"); err == nil || !strings.Contains(err.Error(), "no-such-group-kvx") {
		t.Fatalf("unknown group: %v", err)
	}
}

func TestWriteFailureLeavesTargetAndNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A chown that must fail (unprivileged) or an invalid directory: use a
	// target whose parent is a regular file.
	bad := filepath.Join(path, "child")
	if _, err := Write(bad, []byte("new\n"), Options{}); err == nil {
		t.Fatal("write under a regular file succeeded")
	}
	assertFile(t, path, "old\n", 0o644)
	// A target that is a directory is refused, not replaced.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(sub, []byte("new\n"), Options{}); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("write over a directory: %v", err)
	}
	noTemps(t, dir)
}

func assertFile(t *testing.T, path, want string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s = %q, want %q", path, b, want)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != mode {
		t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), mode)
	}
}

func assertOwner(t *testing.T, path string, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s owned by %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}

func noTemps(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".kvx-") {
			t.Errorf("temp file left behind: %s", e.Name())
		}
	}
}
