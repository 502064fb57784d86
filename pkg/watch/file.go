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
	return FileWith(ctx, path, FileOptions{Quiet: quiet}, fn)
}

// FileOptions tune FileWith.
type FileOptions struct {
	Quiet time.Duration // as FileQuiet's quiet
	// Retry, when positive, calls fn again after an error without waiting
	// for a change: after Retry, doubling on each further error up to
	// MaxRetry (default 30 s). A change before then calls fn as usual.
	Retry, MaxRetry time.Duration
}

// FileWith is FileQuiet with retries of a failed call (FileOptions.Retry).
func FileWith(ctx context.Context, path string, o FileOptions, fn func() error) error {
	quiet := o.Quiet
	if o.MaxRetry <= 0 {
		o.MaxRetry = 30 * time.Second
	}
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
	var (
		retry      *time.Timer
		retryFire  <-chan time.Time // nil while no retry is pending
		retryAfter time.Duration
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	// call calls fn, and schedules a retry when it fails and retries are on.
	call := func() {
		retryFire = nil
		if err := fn(); err == nil || o.Retry <= 0 || ctx.Err() != nil {
			retryAfter = 0
			return
		}
		retryAfter = min(max(2*retryAfter, o.Retry), o.MaxRetry)
		if retry == nil {
			retry = time.NewTimer(retryAfter)
		} else {
			retry.Reset(retryAfter)
		}
		retryFire = retry.C
	}
	changed := func() {
		if quiet <= 0 {
			call()
			return
		}
		if timer == nil {
			timer = time.NewTimer(quiet)
		} else {
			timer.Reset(quiet) // since Go 1.23 no stale value is left in timer.C
		}
		fire = timer.C
	}
	call()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-fire:
			fire = nil
			call()
		case <-retryFire:
			call()
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
