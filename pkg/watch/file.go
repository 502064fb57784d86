package watch

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

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
	return FileQuiet(ctx, path, 0, fn)
}

// FileQuiet is File with a quiet period: after a change, fn is called once
// the file has seen no event for quiet, so a burst of events (an editor's
// save, a writer's several writes) costs one call, made after the last of
// them. Each event restarts the period. The first call, at the start, is
// made at once. A quiet of 0 or less calls fn on every event, as File does.
func FileQuiet(ctx context.Context, path string, quiet time.Duration, fn func() error) error {
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
	var (
		timer *time.Timer
		fire  <-chan time.Time // nil while no call is pending
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	changed := func() {
		if quiet <= 0 {
			_ = fn()
			return
		}
		if timer == nil {
			timer = time.NewTimer(quiet)
		} else {
			timer.Reset(quiet) // since Go 1.23 no stale value is left in timer.C
		}
		fire = timer.C
	}
	_ = fn()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-fire:
			fire = nil
			_ = fn()
		case err, ok := <-w.Errors:
			if !ok {
				return ctx.Err()
			}
			// An overflowed queue may have lost this file's events: look.
			_ = err
			changed()
		case ev, ok := <-w.Events:
			if !ok {
				return ctx.Err()
			}
			if filepath.Clean(ev.Name) == abs {
				changed()
			}
		}
	}
}
