package atomicfile

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// special makes one file of each type Write must refuse, in dir, and
// returns name -> (path, type name in the refusal). A device node needs
// root (CAP_MKNOD); as another user it is left out.
func special(t *testing.T, dir string) map[string][2]string {
	t.Helper()
	m := map[string][2]string{}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	m["fifo"] = [2]string{fifo, "FIFO"}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	m["socket"] = [2]string{sock, "socket"}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	m["directory"] = [2]string{sub, "directory"}
	if os.Geteuid() == 0 {
		null := filepath.Join(dir, "null") // a copy of /dev/null: char 1,3
		if err := syscall.Mknod(null, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			t.Fatal(err)
		}
		m["char device"] = [2]string{null, "character device"}
		loop := filepath.Join(dir, "blk") // block 7,0 (loop0), never opened
		if err := syscall.Mknod(loop, syscall.S_IFBLK|0o600, 7<<8); err != nil {
			t.Fatal(err)
		}
		m["block device"] = [2]string{loop, "block device"}
	}
	return m
}

// within fails the test if f has not returned after a generous deadline:
// a FIFO opened for reading would block forever.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

func TestSpecialFilesRefused(t *testing.T) {
	dir := t.TempDir()
	for name, pt := range special(t, dir) {
		t.Run(name, func(t *testing.T) {
			path, typ := pt[0], pt[1]
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range []struct {
				name string
				run  func() error
			}{
				{"Write", func() error { _, err := Write(path, []byte("x\n"), Options{}); return err }},
				{"Replace", func() error { return Replace(path, []byte("x\n"), Options{}) }},
				{"Fix", func() error { _, err := Fix(path, Options{Mode: 0o600}); return err }},
				{"Write following links", func() error {
					_, err := Write(path, []byte("x\n"), Options{FollowSymlinks: true})
					return err
				}},
			} {
				var err error
				within(t, op.name, func() { err = op.run() })
				if !errors.Is(err, ErrNotRegular) {
					t.Fatalf("%s(%s) = %v, want a refusal matching ErrNotRegular", op.name, name, err)
				}
				if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, typ) {
					t.Errorf("%s(%s): %q does not name the path and %q", op.name, name, msg, typ)
				}
			}
			after, err := os.Lstat(path)
			if err != nil || after.Mode() != before.Mode() || !os.SameFile(before, after) {
				t.Errorf("%s changed: %v -> %v (%v)", path, before.Mode(), after.Mode(), err)
			}
			var f *os.File
			within(t, "Open", func() { f, err = Open(path) })
			if !errors.Is(err, ErrNotRegular) {
				f.Close()
				t.Errorf("Open(%s) = %v, want ErrNotRegular", name, err)
			}
		})
	}
	noTemps(t, dir)
}

func TestSymlinkRefusedUnlessFollowed(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real", "hosts")
	if err := os.MkdirAll(filepath.Dir(real), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("real/hosts", link); err != nil {
		t.Fatal(err)
	}
	_, err := Write(link, []byte("new\n"), Options{})
	var te *TypeError
	if !errors.As(err, &te) || te.Type != "symbolic link" || te.Link != "real/hosts" || !strings.Contains(err.Error(), link) {
		t.Fatalf("Write(link) = %v, want a symbolic link refusal naming %s and its target", err, link)
	}
	if _, err := Open(link); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Open(link) = %v, want ErrNotRegular", err)
	}
	assertFile(t, real, "old\n", 0o644)

	// Followed: the target is replaced in its own directory, the link kept.
	res, err := Write(link, []byte("new\n"), Options{FollowSymlinks: true, Mode: 0o640})
	if err != nil || !res.Written {
		t.Fatalf("Write(link, follow) = %+v, %v", res, err)
	}
	assertFile(t, real, "new\n", 0o640)
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("link replaced: %v, %v", fi.Mode(), err)
	}
	if dest, _ := os.Readlink(link); dest != "real/hosts" {
		t.Errorf("link now points to %q", dest)
	}
	res, err = Write(link, []byte("new\n"), Options{FollowSymlinks: true, Mode: 0o640})
	if err != nil || res.Written || res.Fixed {
		t.Errorf("same content through the link: %+v, %v; want nothing done", res, err)
	}
	noTemps(t, dir)
	noTemps(t, filepath.Dir(real))

	// A chain of links, the last one dangling: the final target is created.
	if err := os.Symlink("link2", filepath.Join(dir, "link1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "made", "here"), filepath.Join(dir, "link2")); err != nil {
		t.Fatal(err)
	}
	if err := Replace(filepath.Join(dir, "link1"), []byte("x\n"), Options{FollowSymlinks: true}); err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(dir, "made", "here"), "x\n", 0o644)

	// A loop is an error, not a hang.
	loop := filepath.Join(dir, "loop")
	if err := os.Symlink("loop", loop); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(loop, []byte("x\n"), Options{FollowSymlinks: true}); err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Errorf("Write(loop) = %v, want a too many links error", err)
	}
	// A link to a special file is refused even when followed.
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("fifo", filepath.Join(dir, "tofifo")); err != nil {
		t.Fatal(err)
	}
	within(t, "Write(link to fifo)", func() {
		_, err = Write(filepath.Join(dir, "tofifo"), []byte("x\n"), Options{FollowSymlinks: true})
	})
	if !errors.As(err, &te) || !strings.Contains(te.Type, "FIFO") {
		t.Errorf("Write(link to fifo, follow) = %v, want a FIFO refusal", err)
	}
}
