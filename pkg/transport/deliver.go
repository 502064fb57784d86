package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/watch"
)

// DeliverOptions describe one kvx out.
type DeliverOptions struct {
	Key            string
	Path           string // target file; made absolute
	MinLines       int
	IgnoreStop     bool
	File           atomicfile.Options
	Command        string        // run with sh -c after a delivery
	CommandTimeout time.Duration // default 1m
	NoAck          bool
	// AckJitter delays the acknowledgement PUT (against Consul) by a
	// random time up to it, so a fleet that just took a new version does
	// not write a thousand acks at the moment the others are still
	// fetching. --watch uses it; a one shot acknowledges at once.
	AckJitter time.Duration
	// AckDelay holds, against a kvx server, the next blocking query (which
	// carries the acknowledgement) this long after a delivery, so that a
	// fleet's next queries follow its deliveries instead of competing with
	// them. They arrive as closely together as the deliveries went out,
	// which a server takes more cheaply than the same queries spread at
	// random (each lone request wakes it from idle). A kvx server says
	// when it applied the change (X-Kvx-Index-Age): the delay then counts
	// from that moment, to its next multiple after the delivery, so the
	// nodes woken by one push send their next queries together, in one
	// burst per AckDelay however long the fleet took to fetch. A push made
	// meanwhile is not missed: the query's index has moved and it answers
	// at once.
	AckDelay time.Duration
}

// DefaultAckDelay is kvx out --watch's -ack-delay: longer than a fleet of
// a thousand nodes takes to fetch a push from one server, so the next
// queries come after the deliveries.
const DefaultAckDelay = 300 * time.Millisecond

// Delivery says what one kvx out did.
type Delivery struct {
	Key      string
	Path     string
	Result   string // a Result* constant
	Checksum string // the checksum in KV
	Bytes    int
	Lines    int
	Fixed    bool      // unchanged content, mode or owner put back
	Written  time.Time // when the rename happened (zero if nothing was written)
	Output   string    // the command's output
	Took     time.Duration
	Err      error

	have string // the checksum the target holds after this run
	// ahead: the file is current, but the data the watch was handed is not
	// that checksum's content (a two-step writer is between its steps)
	ahead bool
}

const maxCommandOutput = 64 << 10

// Deliver brings the target file up to date with KV: it refuses (a Refusal,
// the file untouched) on a freeze, the stop switch, missing data, a checksum
// mismatch or too few lines; it writes nothing and runs nothing when the
// file already has the checksum; otherwise it writes the file atomically and
// runs the command. The outcome is acknowledged under nodes/<node>. The
// returned error is Delivery.Err.
func (c *Client) Deliver(ctx context.Context, o DeliverOptions) Delivery {
	return c.deliverWith(ctx, o, inHand{})
}

// inHand is what a watch's answer already holds (follow.go): the data
// key's raw value (pre, nil if not), the keys a kvx server read with it
// (reads, nil if none), and where the acknowledgement goes instead of a
// PUT (deferAck: the next blocking query carries it).
type inHand struct {
	pre      []byte
	reads    map[string]*consulapi.KVPair
	deferAck func(key string, value []byte)
	changed  time.Time // when the server applied the change, zero if unknown
}

// deliverWith is Deliver with what a watch's answer already holds.
func (c *Client) deliverWith(ctx context.Context, o DeliverOptions, h inHand) Delivery {
	start := time.Now()
	d := Delivery{Key: o.Key, Path: o.Path}
	s, err := c.deliver(ctx, o, h, &d)
	d.Err = err
	d.Took = time.Since(start)
	d.Result = deliveryResult(d)
	c.report("out", o.Key, d.Bytes, d.Lines, d.Took, d.Result)
	if !o.NoAck && s != nil && h.deferAck != nil {
		sleep(ctx, ackWait(o.AckDelay, h.changed, time.Now()))
		if key, value, ok := c.ackValue(s, d); ok {
			h.deferAck(key, value)
		}
	} else if !o.NoAck && s != nil {
		if o.AckJitter > 0 {
			sleep(ctx, rand.N(o.AckJitter))
		}
		if err := c.ack(ctx, s, d); err != nil {
			c.log().Warn("acknowledge", "key", o.Key, "err", err)
		}
	}
	return d
}

// ackWait is how long a watch holds its next query after a delivery: until
// the next multiple of delay after the change when the server said when
// that was, else delay.
func ackWait(delay time.Duration, changed, now time.Time) time.Duration {
	since := now.Sub(changed)
	if delay <= 0 || changed.IsZero() || since < 0 {
		return max(delay, 0)
	}
	return delay - since%delay
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	t.Stop()
}

func deliveryResult(d Delivery) string {
	var cf *commandError
	switch {
	case errors.Is(d.Err, ErrRefused):
		return ResultRefused
	case errors.As(d.Err, &cf):
		return ResultCommandFailed
	case d.Err != nil:
		return ResultError
	case !d.Written.IsZero():
		return ResultDelivered
	}
	return ResultUnchanged
}

func (c *Client) deliver(ctx context.Context, o DeliverOptions, h inHand, d *Delivery) (*snapshot, error) {
	l, err := c.layout(o.Key)
	if err != nil {
		return nil, err
	}
	path, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", o.Path, err)
	}
	d.Path = path
	ackKey := ""
	if !o.NoAck {
		ackKey = l.Node(c.Node)
	}
	var (
		content   []byte
		unchanged bool
		target    string // path, or with FollowSymlinks its link's final target
	)
	s, err := c.readContent(ctx, l, Lock(c.prefix(), path, c.Node), ackKey, h, func(s *snapshot) error {
		d.Checksum = s.sum()
		// The target's type is checked before anything is opened: only a
		// regular file (or a link to one, when asked) is read or replaced.
		// What it holds is known before any refusal, so the acknowledgement
		// of a refusal says which version the node has.
		if target, err = atomicfile.Resolve(path, o.File.FollowSymlinks); err != nil {
			return fileRefusal(err)
		}
		have, err := c.fileSum(target)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fileRefusal(err)
		}
		d.have = have
		switch {
		case s.lock != nil:
			return refuse(RefusedFrozen, "%s is frozen on %s (%s): not delivered", path, c.Node, reason(s.lock))
		case s.stop != nil && !o.IgnoreStop:
			return refuse(RefusedStop, "%s is set (%s): not delivered", l.Stop(), reason(s.stop))
		case s.checksum == nil:
			return refuse(RefusedMissing, "%s is missing", l.Checksum())
		}
		if unchanged = have == d.Checksum; unchanged {
			// No need for the data; but data handed over by a watch that
			// is not this checksum's content means the checksum has yet
			// to follow (a manifest cannot be checked without its chunks).
			if s.pre != nil && s.checksum.Flags&FlagManifest == 0 {
				_, derr := decode(s.checksum.Flags, s.pre, d.Checksum)
				d.ahead = derr != nil
			}
			return nil
		}
		content, err = c.content(ctx, s)
		return err
	})
	if err != nil {
		return s, err
	}
	// No re-delivery: a file that already has the checksum is not rewritten
	// and its command not run again, unless that command failed last time.
	if unchanged {
		if d.Fixed, err = atomicfile.Fix(target, o.File); err != nil {
			return s, fileRefusal(err)
		}
		a, _ := parseAck(s.ack)
		failed, _ := c.failed.Load(path) // the ack may not be written yet (--ack-jitter)
		if o.Command != "" && (a.Checksum == d.have && a.Result == ResultCommandFailed || failed == d.have) {
			c.log().Info("re-running the command that failed after the last delivery", "key", o.Key, "file", path)
			d.Output, err = c.runCommand(ctx, o, path, d.Checksum)
		}
		return s, err
	}
	d.Bytes, d.Lines = len(content), checksum.Lines(content)
	if d.Lines < o.MinLines {
		return s, refuse(RefusedTooShort, "%s: %d lines, fewer than the minimum of %d: not delivered", l.Data(), d.Lines, o.MinLines)
	}
	if err := atomicfile.ReplaceResolved(target, content, o.File); err != nil {
		return s, fileRefusal(err)
	}
	d.Written = time.Now()
	d.have = d.Checksum
	c.remember(target, d.Checksum)
	if o.Command != "" {
		d.Output, err = c.runCommand(ctx, o, path, d.Checksum)
		return s, err
	}
	return s, nil
}

// runCommand runs the command and remembers a failure for path, so the next
// check runs it again even though the file is current.
func (c *Client) runCommand(ctx context.Context, o DeliverOptions, path, sum string) (string, error) {
	out, err := runCommand(ctx, o, sum)
	if err != nil {
		c.failed.Store(path, sum)
	} else {
		c.failed.Delete(path)
	}
	return out, err
}

// fileState identifies a version of a file without reading it.
type fileState struct {
	sum   string
	size  int64
	mtime int64
	ino   uint64
}

func statOf(path string) (fileState, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileState{}, err
	}
	st := fileState{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// fileSum is the checksum of the target file, "" with an error wrapping
// fs.ErrNotExist when there is none. A file this client wrote and that
// has not changed since (same inode, size and mtime) is not read again.
func (c *Client) fileSum(path string) (string, error) {
	st, err := statOf(path)
	if err != nil {
		return "", err
	}
	if v, ok := c.files.Load(path); ok {
		if k := v.(fileState); k.size == st.size && k.mtime == st.mtime && k.ino == st.ino {
			return k.sum, nil
		}
	}
	f, err := atomicfile.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum, err := checksum.OfReader(f)
	if err == nil {
		c.remember(path, sum)
	}
	return sum, err
}

func (c *Client) remember(path, sum string) {
	if st, err := statOf(path); err == nil {
		st.sum = sum
		c.files.Store(path, st)
	}
}

type commandError struct {
	cmd string
	err error
}

func (e *commandError) Error() string { return fmt.Sprintf("command %q: %v", e.cmd, e.err) }
func (e *commandError) Unwrap() error { return e.err }

// runCommand runs o.Command with sh -c, bounded by its timeout, and returns
// its combined output (capped).
func runCommand(ctx context.Context, o DeliverOptions, sum string) (string, error) {
	timeout := o.CommandTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", o.Command)
	cmd.Env = append(os.Environ(), "KVX_KEY="+o.Key, "KVX_FILE="+o.Path, "KVX_CHECKSUM="+sum)
	// The command gets its own process group, killed whole at the timeout,
	// so a child it started (sleep, a daemon reload) cannot outlive it
	// holding the output pipe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A child that left the group (setsid) and holds the output pipe does
	// not keep kvx waiting: the pipe is closed this long after the command
	// exited or was killed, so SIGTERM ends kvx well within a second.
	cmd.WaitDelay = 500 * time.Millisecond
	var out cappedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	switch {
	case parent.Err() != nil:
		err = fmt.Errorf("killed: %w", context.Cause(parent))
	case ctx.Err() == context.DeadlineExceeded:
		err = fmt.Errorf("timed out after %v", timeout)
	}
	if err != nil {
		return out.String(), &commandError{cmd: o.Command, err: err}
	}
	return out.String(), nil
}

type cappedBuffer struct{ bytes.Buffer }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxCommandOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// ack records d under nodes/<node> unless the stored acknowledgement already
// says the same (same checksum, result and error), so a fleet re-checking
// every few minutes does not write to Raft for nothing.
func (c *Client) ack(ctx context.Context, s *snapshot, d Delivery) error {
	key, value, ok := c.ackValue(s, d)
	if !ok {
		return nil
	}
	_, err := c.KV.Put(&consulapi.KVPair{Key: key, Value: value}, (&consulapi.WriteOptions{}).WithContext(ctx))
	return err
}

// ackValue is the acknowledgement of d, and whether it says something the
// stored one (in s) does not.
func (c *Client) ackValue(s *snapshot, d Delivery) (string, []byte, bool) {
	a := Ack{Node: c.Node, Checksum: d.have, Result: d.Result, File: d.Path, Time: c.now().UTC().Format(time.RFC3339)}
	if d.Err != nil {
		a.Error = d.Err.Error()
		var r *Refusal
		if errors.As(d.Err, &r) {
			a.Code = r.Code
		}
	}
	if prev, ok := parseAck(s.ack); ok && prev.Checksum == a.Checksum && prev.Result == a.Result && prev.Error == a.Error && prev.File == a.File {
		return "", nil, false
	}
	b, _ := json.Marshal(a)
	return s.layout.Node(c.Node), b, true
}

// errDataAhead makes a watch check again after a backoff: the data key
// changed, its checksum has not (yet).
var errDataAhead = errors.New("the data key holds another version than its checksum names: checking again until the checksum follows")

// Watch runs kvx out --watch: a blocking query, a delivery whenever it
// wakes with a change and at every reconcile, until ctx is done. Refusals
// are reported and wait for the next change; errors (server down, disk, a
// failed command) are retried with backoff. report, if not nil, is called
// after every delivery attempt.
//
// The blocking query is on the data key, read raw, so its answer is the
// file itself: Push writes data and checksum in one transaction, so they
// wake together, and a change costs the node that answer and one read
// transaction (checksum, stop, freeze, acknowledgement); the data is
// verified against that checksum like any read. A KV without raw reads,
// and the kvexpress layout (whose checksum key does not carry the data's
// flags), block on the checksum key instead and fetch the data after. A
// writer that puts data and checksum in two steps can leave the data ahead
// of its checksum, whose own write would not wake a query on the data key;
// that is checked again with backoff, as an error is.
func (c *Client) Watch(ctx context.Context, o DeliverOptions, wo watch.Options, report func(Delivery)) error {
	l, err := c.layout(o.Key)
	if err != nil {
		return err
	}
	query := func(ctx context.Context, index uint64, wait time.Duration) ([]byte, uint64, error) {
		_, meta, err := c.KV.Get(l.Checksum(), (&consulapi.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
		if err != nil {
			return nil, 0, err
		}
		return nil, meta.LastIndex, nil
	}
	var fl *following
	if f, ok := c.KV.(follower); ok && c.lazyRead(l) {
		if fl, err = c.newFollowing(f, l, o); err != nil {
			return err
		}
		query = fl.query
	} else if rg, ok := c.KV.(rawGetter); ok && c.lazyRead(l) {
		query = func(ctx context.Context, index uint64, wait time.Duration) ([]byte, uint64, error) {
			v, _, idx, err := rg.GetRawAt(ctx, l.Data(), index, wait)
			return v, idx, err
		}
	}
	handle := func(ctx context.Context, pre []byte, _ bool) error {
		h := inHand{pre: pre}
		if fl != nil {
			h = fl.inHand(pre)
		}
		d := c.deliverWith(ctx, o, h)
		if report != nil {
			report(d)
		}
		var r *Refusal
		switch {
		case d.Err == nil && d.ahead:
			return errDataAhead
		case d.Err == nil:
		case pre != nil && errors.As(d.Err, &r) && (r.Code == RefusedMismatch || r.Code == RefusedMissing):
			return d.Err // data there, its checksum missing or another's: a two-step writer

		case !errors.Is(d.Err, ErrRefused):
			return d.Err
		}
		return nil
	}
	err = watch.Run(ctx, wo, query, handle)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
