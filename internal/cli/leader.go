package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// whileLeader runs work only while this process holds the lock on prefix
// (consul lock's layout and wire format: <prefix>/.lock, held by a session
// of name that the lock renews), so that of several instances exactly one
// works. When the lock is lost (the session expired, was destroyed, or its
// node failed), work's context ends and the lock is sought again; a lock
// given up by a stopping holder passes to a waiting instance at once. It
// returns when ctx ends, or with work's own end.
func whileLeader(ctx context.Context, c *consulapi.Client, prefix, name string, logger *slog.Logger, work func(context.Context) error) error {
	key := strings.TrimSuffix(prefix, "/") + "/.lock"
	for {
		l, err := c.LockOpts(&consulapi.LockOptions{Key: key, SessionName: name, SessionTTL: "15s",
			MonitorRetries: 5, MonitorRetryTime: time.Second})
		if err != nil {
			return fmt.Errorf("-lock %s: %w", prefix, err)
		}
		logger.Info("waiting for the lock", "key", key)
		lost, err := l.Lock(ctx.Done())
		if err != nil {
			logger.Warn("could not take the lock; trying again", "key", key, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * time.Second):
			}
			continue
		}
		if lost == nil { // ctx ended while waiting
			return nil
		}
		logger.Info("holding the lock", "key", key)
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				cancel()
			case <-wctx.Done():
			}
		}()
		err = work(wctx)
		lostLock := wctx.Err() != nil && ctx.Err() == nil
		cancel()
		if uerr := l.Unlock(); uerr != nil && !lostLock {
			logger.Warn("release the lock", "key", key, "err", uerr)
		}
		if !lostLock {
			return err
		}
		logger.Warn("lost the lock; waiting to take it again", "key", key)
	}
}
