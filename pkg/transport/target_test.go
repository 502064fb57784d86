package transport

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

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// TestDeliverSpecialTargets: kvx out and kvx raw write only regular files.
// A device, FIFO, socket or directory is refused (exit 3 in the CLI) with
// its path and type named and nothing under it opened, a FIFO included
// (which would block a reader forever); the refusal is acknowledged. A
// symbolic link is refused unless followed, then its target is replaced
// and the link kept.
func TestDeliverSpecialTargets(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "web-1")
	content := lines(5, "special")
	mustPush(t, c, PushOptions{Key: "sp/hosts", Content: content})
	if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: "raw/hosts", Value: content}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	targets := map[string]string{} // path -> type named in the refusal
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	targets[fifo] = "FIFO"
	sub := filepath.Join(dir, "dir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	targets[sub] = "directory"
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	targets[sock] = "socket"
	if os.Geteuid() == 0 { // as root, a copy of /dev/null (CAP_MKNOD)
		null := filepath.Join(dir, "null")
		if err := syscall.Mknod(null, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			t.Fatal(err)
		}
		targets[null] = "character device"
	}
	real := filepath.Join(dir, "real")
	if err := os.WriteFile(real, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	targets[link] = "symbolic link"

	for path, typ := range targets {
		before, _ := os.Lstat(path)
		var d, r Delivery
		done := make(chan struct{})
		go func() {
			defer close(done)
			d = c.Deliver(ctx, DeliverOptions{Key: "sp/hosts", Path: path})
			r = c.Raw(ctx, RawOptions{Key: "raw/hosts", Path: path})
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("delivery to the %s %s blocked", typ, path)
		}
		for name, got := range map[string]Delivery{"out": d, "raw": r} {
			if got.Result != ResultRefused || refusalCode(got.Err) != RefusedNotFile {
				t.Errorf("%s to the %s: %+v, want refusal %s", name, typ, got, RefusedNotFile)
				continue
			}
			if msg := got.Err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, typ) {
				t.Errorf("%s to the %s: %q names neither the path nor the type", name, typ, msg)
			}
		}
		after, err := os.Lstat(path)
		if err != nil || after.Mode() != before.Mode() || !os.SameFile(before, after) {
			t.Errorf("%s (%s) changed: %v -> %v", path, typ, before.Mode(), after.Mode())
		}
		st, err := c.Status(ctx, "sp/hosts")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Behind) != 1 || st.Behind[0].Code != RefusedNotFile || st.Behind[0].File != path {
			t.Errorf("acknowledgement after the %s: %+v", typ, st.Behind)
		}
	}
	if b := readFile(t, real); string(b) != "old\n" {
		t.Fatalf("the link's target was written without --follow-symlinks: %q", b)
	}

	// Followed: the link's target gets the content, the link stays a link.
	follow := atomicfile.Options{FollowSymlinks: true}
	d := c.Deliver(ctx, DeliverOptions{Key: "sp/hosts", Path: link, File: follow})
	if d.Err != nil || d.Result != ResultDelivered {
		t.Fatalf("deliver through the link: %+v", d)
	}
	if b := readFile(t, real); string(b) != string(content) {
		t.Errorf("link target holds %q", b)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", fi.Mode(), err)
	}
	if d := c.Deliver(ctx, DeliverOptions{Key: "sp/hosts", Path: link, File: follow}); d.Err != nil || d.Result != ResultUnchanged {
		t.Errorf("second delivery through the link: %+v, want unchanged", d)
	}
	if r := c.Raw(ctx, RawOptions{Key: "raw/hosts", Path: link, File: follow}); r.Err != nil || r.Result != ResultUnchanged {
		t.Errorf("raw through the link: %+v, want unchanged", r)
	}
	if !errors.Is(fileRefusal(&atomicfile.TypeError{Path: "p", Type: "FIFO"}), ErrRefused) {
		t.Error("a TypeError is not a refusal")
	}
}
