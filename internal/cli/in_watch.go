package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/transport"
	"github.com/kvxproject/kvx/pkg/watch"
)

// defaultInQuiet is -wait's default: long enough for an editor's save or a
// writer's several writes to settle into one push, short beside the time a
// fleet takes to fetch the file.
const defaultInQuiet = time.Second

// checkWatch refuses -watch where it has no file to follow (stdin, -u, no
// -f), and -wait or -wait-delivered where they would be ignored or block
// the watch.
func (o *inOptions) checkWatch(cmd *cobra.Command) error {
	f := cmd.Flags()
	switch {
	case !o.watch && f.Changed("wait"):
		return usageError{errors.New("-wait needs -watch")}
	case !o.watch:
		return nil
	case o.file == "" || o.file == "-" || o.url != "":
		return usageError{errors.New("-watch needs -f FILE: a file to follow, not stdin (-f -) or -u URL")}
	case o.quiet < 0:
		return usageError{fmt.Errorf("-wait %v: want a duration of 0 or more", o.quiet)}
	case f.Changed("wait-delivered") || f.Changed("want"):
		return usageError{errors.New("-watch does not take -wait-delivered or -want: use kvx status -wait")}
	}
	return nil
}

// watchIn is kvx in -watch: push -f FILE at the start, then each time it
// has changed and been quiet for -wait. Each push is the one-shot's
// (pushSource): same refusals, and nothing written when KV already holds
// the checksum. A refusal is logged and the next change tried; an error
// (the server down) is logged and tried again with backoff (1 s doubling
// to 30 s) until it succeeds or the file changes. SIGINT or SIGTERM (ctx
// cancelled) end it with exit 0, as out --watch.
func watchIn(cmd *cobra.Command, s *session, o *inOptions, codec transport.Codec) error {
	ctx := cmd.Context()
	s.logger.Info("watching", "key", o.key, "file", o.file, "wait", o.quiet, "node", s.Node)
	wo := watch.FileOptions{Quiet: o.quiet, Retry: time.Second, MaxRetry: 30 * time.Second}
	err := watch.FileWith(ctx, o.file, wo, func() error {
		res, err := pushSource(cmd, s, o, codec)
		if ctx.Err() != nil {
			return nil // ending: not a failed push
		}
		logPush(s.logger, o, res, err)
		if errors.Is(err, transport.ErrRefused) || errors.Is(err, fs.ErrNotExist) {
			return nil // the file must change first: wait for it
		}
		return err // the server, a read: tried again with backoff
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// logPush logs one push of -watch: an upload at info, an unchanged file at
// debug, a refusal or a missing file at warn, an error at error.
func logPush(l *slog.Logger, o *inOptions, res transport.PushResult, err error) {
	attrs := []any{"key", o.key, "file", o.file}
	switch {
	case errors.Is(err, transport.ErrRefused):
		l.Warn("refused", append(attrs, "err", err)...)
	case errors.Is(err, fs.ErrNotExist):
		l.Warn("file missing: waiting for it", append(attrs, "err", err)...)
	case err != nil:
		l.Error("push failed", append(attrs, "err", err)...)
	case !res.Uploaded:
		l.Debug("unchanged", append(attrs, "checksum", res.Checksum)...)
	default:
		msg := "uploaded"
		if res.Reencoded {
			msg = "re-encoded"
		}
		l.Info(msg, append(attrs, "checksum", res.Checksum, "previous", res.Previous, "bytes", res.Bytes,
			"lines", res.Lines, "stored", res.Stored, "chunks", res.Chunks, "took", res.Took.Round(time.Microsecond))...)
	}
}
