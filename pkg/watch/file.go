package watch

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// File calls fn once, then each time the file at path may have changed:
// written, created, replaced by a rename (as an editor or an atomic writer
// does), removed or its mode changed. It watches the file's directory, not
// the file, so a replaced file is still followed; events for other names in
// the directory are ignored. An error from fn is not fatal: fn is called
// again on the next change. File returns when ctx is done (with ctx's error)
// or when the directory cannot be watched.
func File(ctx context.Context, path string, fn func() error) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	defer w.Close()
	dir := filepath.Dir(abs)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch directory %s: %w", dir, err)
	}
	_ = fn()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err, ok := <-w.Errors:
			if !ok {
				return ctx.Err()
			}
			// An overflowed queue may have lost this file's events: look.
			_ = err
			_ = fn()
		case ev, ok := <-w.Events:
			if !ok {
				return ctx.Err()
			}
			if filepath.Clean(ev.Name) == abs {
				_ = fn()
			}
		}
	}
}
