package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/metrics"
	"github.com/kvxproject/kvx/pkg/transport"
	"github.com/kvxproject/kvx/pkg/watch"
)

// common are the flags every transfer command shares.
type common struct {
	httpAddr, token, datacenter string
	prefix, node                string
	dogstatsd                   string
	logLevel                    string
	logJSON                     bool
	tls                         tlsClientFlags
	stale                       bool // reads from any server (kvx out -stale)
}

// Which of the optional common flags a command takes: a command does not
// accept a flag it would ignore.
const (
	withPrefix    = 1 << iota // -p: the command reads or writes the layout
	withNode                  // --node: acknowledgements, freezes, the host tag
	withDogstatsd             // --dogstatsd-addr: the command sends metrics or events
)

func (c *common) register(f *pflag.FlagSet, which int) {
	f.StringVar(&c.httpAddr, "http-addr", "", "server HTTP address (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500)")
	f.StringVar(&c.token, "token", "", "ACL token (default: CONSUL_HTTP_TOKEN)")
	f.StringVar(&c.datacenter, "datacenter", "", "datacenter to talk to (default: the server's)")
	if which&withPrefix != 0 {
		f.StringVarP(&c.prefix, "prefix", "p", transport.DefaultPrefix, "KV prefix; \"kvexpress\" reads and writes kvexpress's layout")
	}
	if which&withNode != 0 {
		f.StringVar(&c.node, "node", "", "this node's name, for acknowledgements and freezes (default: host name)")
	}
	if which&withDogstatsd != 0 {
		f.StringVar(&c.dogstatsd, "dogstatsd-addr", "", "send metrics and events to this dogstatsd agent (host:port)")
	}
	f.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&c.logJSON, "log-json", false, "log JSON lines instead of text")
	c.tls.register(f)
}

// absFile makes a file flag's value absolute, so every command prints
// paths the same way ("-" stays stdin).
func absFile(p *string) error {
	if *p == "" || *p == "-" {
		return nil
	}
	abs, err := filepath.Abs(*p)
	if err != nil {
		return fmt.Errorf("-f %s: %w", *p, err)
	}
	*p = abs
	return nil
}

// requireKey checks -k: given (as a flag or KVX_KEY), and a key the
// layout can hold.
func (c *common) requireKey(cmd *cobra.Command, key string) error {
	if err := required(cmd, "key"); err != nil {
		return err
	}
	return c.checkKey("-k", key)
}

// checkKey refuses a key the layout cannot hold (empty, a space, an empty
// or . or .. segment) as a usage error naming the flag.
func (c *common) checkKey(flag, key string) error {
	prefix := c.prefix
	if prefix == "" {
		prefix = transport.DefaultPrefix
	}
	if _, err := transport.NewLayout(prefix, key); err != nil {
		return usageError{fmt.Errorf("%s: %w", flag, err)}
	}
	return nil
}

// session is what a transfer command works with; close releases it.
type session struct {
	*transport.Client
	logger *slog.Logger
	events metrics.Events // nil without -dogstatsd-addr
	close  func()
}

func (c *common) open(cmd *cobra.Command) (*session, error) {
	logger, err := newLogger(cmd.ErrOrStderr(), c.logLevel, c.logJSON)
	if err != nil {
		return nil, err
	}
	node := c.node
	if node == "" {
		if node, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("host name: %w (pass -node)", err)
		}
	}
	kv, err := client.NewKV(client.Options{Address: c.httpAddr, Token: c.token, Datacenter: c.datacenter, TLS: c.tls.options(), Stale: c.stale})
	if err != nil {
		return nil, usageError{err}
	}
	s := &session{
		Client: &transport.Client{KV: kv, Prefix: c.prefix, Node: node, Logger: logger},
		logger: logger,
		close:  func() {},
	}
	if c.dogstatsd != "" {
		d, err := metrics.NewDogstatsd(c.dogstatsd, "kvx.")
		if err != nil {
			return nil, usageError{err}
		}
		s.Metrics, s.events, s.close = d, d, func() { d.Close() }
	}
	return s, nil
}

// refusal maps a transport refusal to exit code 3.
func refusal(err error) error {
	if errors.Is(err, transport.ErrRefused) {
		return fmt.Errorf("%w: %w", errRefused, err)
	}
	return err
}

func required(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if !cmd.Flags().Changed(n) {
			return usageError{fmt.Errorf("--%s is required", n)}
		}
	}
	return nil
}

// ---- kvx in

type inOptions struct {
	common
	key, file, url string
	minLines       int
	maxSize        int64
	compress       string
	urlTimeout     time.Duration
	diffMax        int
	wait           waitFlags     // -wait-delivered, -want (status.go)
	watch          bool          // -watch: keep running, push each change of -f FILE (in_watch.go)
	quiet          time.Duration // -wait: with -watch, the quiet period before a push
}

func newInCmd() *cobra.Command {
	o := &inOptions{}
	cmd := &cobra.Command{
		Use:   "in",
		Short: "Push a file into KV: checksummed, atomic, no re-upload",
		Long: `Push a file (-f FILE, -f - for stdin, or -u URL) to <prefix>/<key>. Refused
with exit code 3 and nothing written: fewer than -l lines, more than
--max-size bytes, or the key's stop switch on. Nothing is written when KV
already holds the same checksum. Data and checksum change in one
transaction; files whose stored form is over 256 KiB go in content-addressed
chunks flipped by one transaction. With -dogstatsd-addr a Datadog event
"Updated: <key>" carries the diff against the previous version.

With -watch, keep running and push -f FILE each time it changes (written,
or replaced by a rename as render and editors do), once it has been quiet
for -wait; a refusal or an error is logged and the next change tried.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runIn(cmd, o) },
	}
	f := cmd.Flags()
	o.register(f, withPrefix|withNode|withDogstatsd)
	f.StringVarP(&o.key, "key", "k", "", "key name under the prefix (required)")
	f.StringVarP(&o.file, "file", "f", "", "file to push; - reads stdin")
	f.StringVarP(&o.url, "url", "u", "", "fetch the file from this URL instead")
	f.IntVarP(&o.minLines, "length", "l", 1, "refuse content with fewer lines than this")
	f.Int64Var(&o.maxSize, "max-size", transport.DefaultMaxSize, "refuse content larger than this many bytes")
	f.StringVarP(&o.compress, "compress", "z", "none", "store compressed: gzip, zstd, brotli or none (readers detect it)")
	f.DurationVar(&o.urlTimeout, "url-timeout", 30*time.Second, "give up on -u after this long")
	f.IntVar(&o.diffMax, "diff-max", transport.DefaultDiffMax, "cap on the diff text of the update event, in bytes")
	o.wait.register(f, "wait-delivered", "after the push, wait up to this long for -want nodes to have it")
	f.BoolVarP(&o.watch, "watch", "w", false, "keep running: push -f FILE again each time it changes")
	f.DurationVar(&o.quiet, "wait", defaultInQuiet, "with --watch: push once FILE has not changed for this long")
	return cmd
}

func runIn(cmd *cobra.Command, o *inOptions) error {
	if err := o.requireKey(cmd, o.key); err != nil {
		return err
	}
	if err := absFile(&o.file); err != nil {
		return err
	}
	if err := o.checkWatch(cmd); err != nil {
		return err
	}
	if (o.file == "") == (o.url == "") {
		return usageError{errors.New("give exactly one of -f FILE (or -f -) and -u URL")}
	}
	codec, err := transport.ParseCodec(o.compress)
	if err != nil {
		return usageError{err}
	}
	if err := o.wait.check(cmd); err != nil {
		return err
	}
	s, err := o.open(cmd)
	if err != nil {
		return err
	}
	defer s.close()
	if o.watch {
		return watchIn(cmd, s, o, codec)
	}
	res, err := pushSource(cmd, s, o, codec)
	if err != nil {
		return refusal(err)
	}
	w := cmd.OutOrStdout()
	if !res.Uploaded {
		fmt.Fprintf(w, "unchanged %s/%s: KV already holds %s", o.prefix, res.Key, res.Checksum)
		if res.PreviousCodec != codec {
			fmt.Fprintf(w, " (stored %s, kept: give -z to store it otherwise)", res.PreviousCodec)
		}
		fmt.Fprintln(w)
		return o.wait.afterPush(cmd, s, o.prefix, res)
	}
	if res.Reencoded {
		fmt.Fprintf(w, "re-encoded %s/%s: same content %s, stored %s instead of %s, %d stored", o.prefix, res.Key, res.Checksum, codec, res.PreviousCodec, res.Stored)
	} else {
		fmt.Fprintf(w, "uploaded %s/%s: %s, %d bytes, %d lines, %d stored", o.prefix, res.Key, res.Checksum, res.Bytes, res.Lines, res.Stored)
	}
	if res.Chunks > 0 {
		fmt.Fprintf(w, " in %d chunks", res.Chunks)
	}
	fmt.Fprintf(w, " (%v)\n", res.Took.Round(time.Millisecond))
	return o.wait.afterPush(cmd, s, o.prefix, res)
}

// pushSource is one push of kvx in, one-shot or under -watch: read the
// source, push it with every refusal the flags ask for, and send the
// update event for an upload.
func pushSource(cmd *cobra.Command, s *session, o *inOptions, codec transport.Codec) (transport.PushResult, error) {
	content, err := readSource(cmd.Context(), cmd.InOrStdin(), o)
	if err != nil {
		return transport.PushResult{}, err
	}
	res, err := s.Push(cmd.Context(), transport.PushOptions{
		Key: o.key, Content: content, MinLines: o.minLines, MaxSize: o.maxSize,
		Codec: codec, Recode: cmd.Flags().Changed("compress"), Diff: s.events != nil, DiffMax: o.diffMax,
	})
	if err != nil {
		return res, err
	}
	if res.Uploaded && s.events != nil && !res.Reencoded {
		if err := s.events.Event("Updated: "+res.Key, res.Diff, "info", "kvx:success", "key:"+res.Key, "host:"+s.Node); err != nil {
			s.logger.Warn("send update event", "err", err)
		}
	}
	return res, nil
}

// readSource reads -f FILE, -f - or -u URL, never more than the size cap
// (one byte more, so the cap refusal can say so); a regular file over the
// cap is refused with its size, unread. A FIFO or stdin may
// block in a system call no context reaches (the open of a FIFO without a
// writer, a read of a terminal); SIGINT or SIGTERM still end the command
// at once (see interruptible).
func readSource(ctx context.Context, stdin io.Reader, o *inOptions) ([]byte, error) {
	limit := o.maxSize
	if limit <= 0 {
		limit = transport.DefaultMaxSize
	}
	switch {
	case o.file == "-":
		return capped("stdin", limit)(interruptible(ctx, "stdin", func() ([]byte, error) {
			return io.ReadAll(io.LimitReader(stdin, limit+1))
		}))
	case o.file != "":
		if fi, err := os.Stat(o.file); err == nil && fi.IsDir() {
			return nil, fmt.Errorf("-f %s is a directory: give a file", o.file)
		}
		return capped(o.file, limit)(interruptible(ctx, o.file, func() ([]byte, error) {
			f, err := os.Open(o.file)
			if err != nil {
				return nil, err // "open FILE: ..."
			}
			defer f.Close()
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
				return nil, &transport.Refusal{Code: transport.RefusedTooLarge, Msg: fmt.Sprintf("%s: %s, more than the cap of %s (--max-size): nothing uploaded", o.file, transport.Size(fi.Size()), transport.Size(limit))}
			}
			return io.ReadAll(io.LimitReader(f, limit+1)) // errors name the file
		}))
	}
	ctx, cancel := context.WithTimeout(ctx, o.urlTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.url, nil)
	if err != nil {
		return nil, usageError{fmt.Errorf("-u %q: %w", o.url, err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", o.url, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("fetch %s: %s: nothing uploaded", o.url, resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, &transport.Refusal{Code: transport.RefusedTooLarge, Msg: fmt.Sprintf("%s: %s, more than the cap of %s", o.url, transport.Size(resp.ContentLength), transport.Size(limit))}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", o.url, unwrapURLError(err))
	}
	return capped(o.url, limit)(b, nil)
}

// capped refuses a read that went past the cap (it reads one byte more
// than the cap to know), without claiming a size it did not read.
func capped(what string, limit int64) func([]byte, error) ([]byte, error) {
	return func(b []byte, err error) ([]byte, error) {
		if err == nil && int64(len(b)) > limit {
			return nil, &transport.Refusal{Code: transport.RefusedTooLarge, Msg: fmt.Sprintf("%s: more than the cap of %s (--max-size): nothing uploaded", what, transport.Size(limit))}
		}
		return b, err
	}
}

// unwrapURLError drops net/http's *url.Error wrapper, which repeats the
// method and the URL the caller already names.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// interruptible runs a read that may block where no context reaches, and
// returns when it is done or when ctx is (SIGINT, SIGTERM). In the second
// case the read's goroutine is abandoned: the command returns and kvx
// exits, which ends it.
func interruptible(ctx context.Context, what string, read func() ([]byte, error)) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := read()
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("read %s: %w: nothing uploaded", what, context.Cause(ctx))
	}
}

// ---- kvx out

// target are the flags of a command that writes a file: out and raw.
type target struct {
	key, file           string
	minLines            int
	chmod, owner, group string
	exec                string
	execTimeout         time.Duration
	followSymlinks      bool
}

func (t *target) register(f *pflag.FlagSet, keyHelp string) {
	f.StringVarP(&t.key, "key", "k", "", keyHelp)
	f.StringVarP(&t.file, "file", "f", "", "target file (required)")
	f.IntVarP(&t.minLines, "length", "l", 1, "refuse content with fewer lines than this")
	f.StringVarP(&t.chmod, "chmod", "c", "0644", "file mode, octal")
	f.StringVarP(&t.owner, "owner", "o", "", "file owner, name or uid (default: the running user)")
	f.StringVarP(&t.group, "group", "g", "", "file group, name or gid (default: the running user's)")
	f.StringVarP(&t.exec, "exec", "e", "", "command run with sh -c after the file changed")
	f.DurationVar(&t.execTimeout, "exec-timeout", time.Minute, "kill the command after this long")
	f.BoolVar(&t.followSymlinks, "follow-symlinks", false, "when the target is a symbolic link, replace its target (the link is kept); refused otherwise")
}

// fileOptions turns -c, -o and -g into atomicfile options.
func (t *target) fileOptions() (atomicfile.Options, error) {
	mode, err := strconv.ParseUint(t.chmod, 8, 32)
	if err != nil || mode > 0o7777 {
		return atomicfile.Options{}, usageError{fmt.Errorf("-c %q: want an octal mode such as 0644", t.chmod)}
	}
	uid, gid, err := atomicfile.Owner(t.owner, t.group)
	if err != nil {
		return atomicfile.Options{}, usageError{err}
	}
	return atomicfile.Options{Mode: os.FileMode(mode), SetOwner: t.owner != "" || t.group != "", UID: uid, GID: gid, FollowSymlinks: t.followSymlinks}, nil
}

type outOptions struct {
	common
	target
	ignoreStop, noAck              bool
	watch                          bool
	reconcile, ackJitter, ackDelay time.Duration
}

func newOutCmd() *cobra.Command {
	o := &outOptions{}
	cmd := &cobra.Command{
		Use:   "out",
		Short: "Deliver a key to a file: verified, atomic, no re-delivery",
		Long: `Write <prefix>/<key> to -f FILE when its checksum verifies, then run -e.
Refused with exit code 3 and the file untouched: checksum mismatch, missing
data, fewer than -l lines, the stop switch (unless --ignore-stop), or this
node's freeze of the file. A file that already has the checksum is not
rewritten and the command not run again (a drifted mode is put back). Each
run is acknowledged under <prefix>/<key>/nodes/<node>.

One shot (cron, ad hoc, or a consul watch handler: the JSON on stdin is
ignored and KV read afresh), or --watch: a blocking query on the data key
(the checksum key with -p kvexpress), a full re-check every --reconcile,
jittered backoff on errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOut(cmd, o) },
	}
	f := cmd.Flags()
	o.common.register(f, withPrefix|withNode|withDogstatsd)
	o.target.register(f, "key name under the prefix (required)")
	f.BoolVar(&o.ignoreStop, "ignore-stop", false, "deliver even when the key's stop switch is on")
	f.BoolVar(&o.noAck, "no-ack", false, "do not acknowledge under <prefix>/<key>/nodes/<node>")
	f.BoolVarP(&o.watch, "watch", "w", false, "keep running: deliver every change as it happens")
	f.DurationVar(&o.reconcile, "reconcile", 5*time.Minute, "with --watch: full re-check at least this often")
	f.DurationVar(&o.ackJitter, "ack-jitter", time.Second, "with --watch against Consul: PUT each acknowledgement after a random delay up to this")
	f.DurationVar(&o.ackDelay, "ack-delay", transport.DefaultAckDelay, "with --watch against a kvx server: send the next query, which carries the acknowledgement, this long after a delivery")
	f.BoolVar(&o.stale, "stale", false, "read from the server asked (?stale) instead of through the leader, so a cluster's servers share the fleet's blocking queries; the checksum still verifies what is written, acknowledgements still go to the leader")
	return cmd
}

// open checks the target flags and opens the session of out or raw.
func (t *target) open(cmd *cobra.Command, c *common) (*session, atomicfile.Options, error) {
	if err := c.requireKey(cmd, t.key); err != nil {
		return nil, atomicfile.Options{}, err
	}
	if err := required(cmd, "file"); err != nil {
		return nil, atomicfile.Options{}, err
	}
	if err := absFile(&t.file); err != nil {
		return nil, atomicfile.Options{}, err
	}
	fo, err := t.fileOptions()
	if err != nil {
		return nil, fo, err
	}
	s, err := c.open(cmd)
	return s, fo, err
}

// finish reports a one-shot delivery once: success as the result line on
// stdout, a failure as the returned error (one line on stderr, exit 1, or
// 3 for a refusal), with a failed command's output. The log has it at
// debug level only.
func finish(cmd *cobra.Command, s *session, d transport.Delivery) error {
	logDelivery(s.logger, d, true)
	if d.Err == nil {
		fmt.Fprintln(cmd.OutOrStdout(), describe(d))
		return nil
	}
	if out := strings.TrimSpace(d.Output); out != "" && d.Result == transport.ResultCommandFailed {
		return fmt.Errorf("%s: %w; its output:\n%s", describe(d), d.Err, out)
	}
	return refusal(d.Err)
}

func runOut(cmd *cobra.Command, o *outOptions) error {
	s, fo, err := o.target.open(cmd, &o.common)
	if err != nil {
		return err
	}
	defer s.close()
	do := transport.DeliverOptions{
		Key: o.key, Path: o.file, MinLines: o.minLines, IgnoreStop: o.ignoreStop, File: fo,
		Command: o.exec, CommandTimeout: o.execTimeout, NoAck: o.noAck,
	}
	if !o.watch {
		return finish(cmd, s, s.Deliver(cmd.Context(), do))
	}
	do.AckJitter, do.AckDelay = o.ackJitter, o.ackDelay
	s.logger.Info("watching", "key", o.key, "file", o.file, "node", s.Node)
	return s.Watch(cmd.Context(), do, watch.Options{Reconcile: o.reconcile, Logger: s.logger}, func(d transport.Delivery) {
		logDelivery(s.logger, d, false)
	})
}

func describe(d transport.Delivery) string {
	switch d.Result {
	case transport.ResultDelivered:
		return fmt.Sprintf("delivered %s to %s: %s, %d bytes, %d lines", d.Key, d.Path, d.Checksum, d.Bytes, d.Lines)
	case transport.ResultUnchanged:
		s := fmt.Sprintf("unchanged %s: %s already has %s", d.Key, d.Path, d.Checksum)
		if d.Fixed {
			s += " (mode or owner put back)"
		}
		return s
	case transport.ResultCommandFailed:
		return fmt.Sprintf("delivered %s to %s, but its command failed", d.Key, d.Path)
	}
	return fmt.Sprintf("%s %s: %v", d.Result, d.Key, d.Err)
}

// logDelivery logs one delivery: for --watch at info (warn for a refusal,
// error for a failure); for a one shot, whose result is printed, at debug.
func logDelivery(l *slog.Logger, d transport.Delivery, oneShot bool) {
	attrs := []any{"key", d.Key, "file", d.Path, "result", d.Result, "checksum", d.Checksum, "took", d.Took.Round(time.Microsecond)}
	if d.Output != "" {
		attrs = append(attrs, "output", strings.TrimSpace(d.Output))
	}
	level := func(watching slog.Level) slog.Level {
		if oneShot {
			return slog.LevelDebug
		}
		return watching
	}
	ctx := context.Background()
	switch {
	case d.Err != nil && d.Result == transport.ResultRefused:
		l.Log(ctx, level(slog.LevelWarn), "refused", append(attrs, "err", d.Err)...)
	case d.Err != nil:
		l.Log(ctx, level(slog.LevelError), "delivery failed", append(attrs, "err", d.Err)...)
	case d.Result == transport.ResultDelivered:
		l.Log(ctx, level(slog.LevelInfo), "delivered", attrs...)
	default:
		l.Debug("checked", attrs...)
	}
}
