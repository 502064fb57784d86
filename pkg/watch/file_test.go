package watch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A file is followed through in-place writes, atomic renames and removal;
// other files in its directory do not call fn.
func TestFileFollowsWritesAndRenames(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.conf")
	seen := make(chan string, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- File(ctx, path, func() error {
			b, err := os.ReadFile(path)
			if err != nil {
				seen <- "<missing>"
				return err
			}
			seen <- string(b)
			return nil
		})
	}()
	expect := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case got := <-seen:
				if got == want {
					return
				}
			case <-deadline:
				t.Fatalf("never saw %q", want)
			}
		}
	}
	expect("<missing>")
	if err := os.WriteFile(path, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	expect("one")
	tmp := filepath.Join(dir, ".app.conf.tmp")
	if err := os.WriteFile(tmp, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	expect("two")
	// Drain, then touch another file: fn must not be called for it.
	for len(seen) > 0 {
		<-seen
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// The first call after the drain is the removal, not "other".
	select {
	case got := <-seen:
		if got != "<missing>" {
			t.Fatalf("after writing another file and removing ours, fn saw %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removal not seen")
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("File returned %v", err)
	}
}

func TestFileMissingDirectory(t *testing.T) {
	err := File(context.Background(), filepath.Join(t.TempDir(), "no", "such", "file"), func() error { return nil })
	if err == nil {
		t.Fatal("watching a file in a missing directory succeeded")
	}
}

// With a quiet period, the first call is made at once and a burst of
// changes ends in a call that sees the last of them.
func TestFileQuietCallsAfterTheLastChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(path, []byte("v0"), 0o644); err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- FileQuiet(ctx, path, 20*time.Millisecond, func() error {
			b, _ := os.ReadFile(path)
			seen <- string(b)
			return nil
		})
	}()
	if got := <-seen; got != "v0" {
		t.Fatalf("first call saw %q, want v0", got)
	}
	for i := 1; i <= 5; i++ {
		tmp := filepath.Join(dir, ".app.conf.tmp")
		if err := os.WriteFile(tmp, fmt.Appendf(nil, "v%d", i), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(10 * time.Second)
	for got := ""; got != "v5"; {
		select {
		case got = <-seen:
		case <-deadline:
			t.Fatal("the last change was never seen")
		}
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("FileQuiet returned %v", err)
	}
}

// With Retry, a failed call is made again without any change to the file,
// until it succeeds; then no more retries.
func TestFileWithRetriesAFailedCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.conf")
	calls := make(chan int, 64)
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- FileWith(ctx, path, FileOptions{Retry: time.Millisecond, MaxRetry: 4 * time.Millisecond}, func() error {
			n++
			calls <- n
			if n < 4 {
				return fmt.Errorf("failure %d", n)
			}
			return nil
		})
	}()
	deadline := time.After(10 * time.Second)
	for got := 0; got < 4; {
		select {
		case got = <-calls:
		case <-deadline:
			t.Fatal("a failed call was not retried")
		}
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("FileWith returned %v", err)
	}
	if n != 4 {
		t.Fatalf("fn called %d times, want 4 (3 failures, then no retry after the success)", n)
	}
}
