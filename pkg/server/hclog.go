package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// hclogAdapter is an hclog.Logger (what Raft and raft-wal log through) over
// slog. Values are rendered as text: an error by its message, a fmt.Stringer
// by its String, a struct with its field names (raft.Server reads
// {Suffrage:Voter ID:n2 Address:127.0.0.1:8302}).
//
// It also sets the level of a few Raft messages, which Raft logs alike for
// the normal and the broken case (see logPolicy).
type hclogAdapter struct {
	logger  *slog.Logger
	name    string
	implied []any
	level   *atomic.Int32 // an hclog.Level, shared with every logger derived from this one
	policy  *logPolicy
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// levelTrace is below slog's Debug: Raft's trace lines show only if a
// handler asks for them.
const levelTrace = slog.LevelDebug - 4

func newHCLogger(logger *slog.Logger, policy *logPolicy) hclog.Logger {
	l := &hclogAdapter{logger: logger, name: "raft", level: new(atomic.Int32), policy: policy}
	l.level.Store(int32(hclog.Trace)) // the slog handler decides
	return l
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo // Info, NoLevel, Default
}

func (l *hclogAdapter) enabled(level hclog.Level) bool {
	if level == hclog.Off || level < hclog.Level(l.level.Load()) {
		return false
	}
	return l.logger.Enabled(context.Background(), slogLevel(level))
}

func (l *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level != hclog.NoLevel && level < hclog.Level(l.level.Load()) {
		return
	}
	lvl := l.policy.level(slogLevel(level), msg, args)
	ctx := context.Background()
	if !l.logger.Enabled(ctx, lvl) {
		return
	}
	attrs := make([]slog.Attr, 0, 1+(len(l.implied)+len(args)+1)/2)
	if l.name != "" {
		attrs = append(attrs, slog.String("component", l.name))
	}
	attrs = appendPairs(attrs, l.implied)
	attrs = appendPairs(attrs, args)
	l.logger.LogAttrs(ctx, lvl, msg, attrs...)
}

// appendPairs turns hclog's key/value list into attributes; an odd value
// out gets hclog's key for it.
func appendPairs(attrs []slog.Attr, kv []any) []slog.Attr {
	for i := 0; i < len(kv); i += 2 {
		if i+1 == len(kv) {
			attrs = append(attrs, slog.Any(hclog.MissingKey, logValue(kv[i])))
			break
		}
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprint(kv[i])
		}
		attrs = append(attrs, slog.Any(key, logValue(kv[i+1])))
	}
	return attrs
}

// logValue renders a value as slog shows it well: text for anything that is
// not a plain number, string, bool, time or duration.
func logValue(v any) (out any) {
	switch x := v.(type) {
	case nil, string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		float32, float64, time.Time, time.Duration, slog.Value:
		return v
	case hclog.Format:
		if len(x) == 0 {
			return ""
		}
		if f, ok := x[0].(string); ok {
			return fmt.Sprintf(f, x[1:]...)
		}
		return fmt.Sprint(x...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(x))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(x))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(x))
	case hclog.Quote:
		return fmt.Sprintf("%q", string(x))
	case []byte:
		return string(x)
	}
	defer func() {
		if recover() != nil { // a nil pointer with a value-receiver String
			out = fmt.Sprintf("%+v", v)
		}
	}()
	switch x := v.(type) {
	case error:
		return x.Error()
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprintf("%+v", v)
}

func (l *hclogAdapter) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *hclogAdapter) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *hclogAdapter) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *hclogAdapter) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *hclogAdapter) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *hclogAdapter) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *hclogAdapter) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *hclogAdapter) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *hclogAdapter) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *hclogAdapter) IsError() bool { return l.enabled(hclog.Error) }

func (l *hclogAdapter) ImpliedArgs() []any { return l.implied }

func (l *hclogAdapter) With(args ...any) hclog.Logger {
	c := *l
	c.implied = append(append([]any(nil), l.implied...), args...)
	return &c
}

func (l *hclogAdapter) Name() string { return l.name }

func (l *hclogAdapter) Named(name string) hclog.Logger {
	c := *l
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (l *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

func (l *hclogAdapter) SetLevel(level hclog.Level) { l.level.Store(int32(level)) }
func (l *hclogAdapter) GetLevel() hclog.Level      { return hclog.Level(l.level.Load()) }

func (l *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

func (l *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return stdlogWriter{l: l, infer: opts.InferLevels, force: opts.ForceLevel}
}

// stdlogWriter logs each line written by a standard library logger.
type stdlogWriter struct {
	l     *hclogAdapter
	infer bool
	force hclog.Level
}

func (w stdlogWriter) Write(p []byte) (int, error) {
	for line := range bytes.SplitSeq(bytes.TrimSpace(p), []byte("\n")) {
		msg, level := string(line), hclog.Info
		if w.force != hclog.NoLevel {
			level = w.force
		} else if w.infer {
			for prefix, lv := range map[string]hclog.Level{"[TRACE]": hclog.Trace, "[DEBUG]": hclog.Debug,
				"[INFO]": hclog.Info, "[WARN]": hclog.Warn, "[ERR]": hclog.Error, "[ERROR]": hclog.Error} {
				if rest, ok := strings.CutPrefix(msg, prefix); ok {
					msg, level = strings.TrimSpace(rest), lv
					break
				}
			}
		}
		w.l.Log(level, msg)
	}
	return len(p), nil
}

// logPolicy sets the level of Raft messages that are normal in one case
// and a fault in another (the rest keep Raft's level):
//
//   - "heartbeat timeout reached, starting election" is how every node's
//     first election starts, and how a follower takes over from a leader
//     that said goodbye: Info then, Warn when a leader was lost.
//   - Raft's errors about a peer it cannot reach (heartbeat, appendEntries,
//     requestVote, ...) are Warn while that peer is known to have stopped
//     cleanly (it said goodbye when shutting down, see Server.sayGoodbye),
//     until this node reaches it again. A peer that vanished without a
//     goodbye is an error.
//   - "failed to decode incoming command" on a connection this node's own
//     shutdown closed is Debug; on one a peer reset, Warn.
//   - While this node stops cleanly, "peer has newer term, stopping
//     replication" is how its hand-over of leadership ends (Info), and
//     Raft's other errors are the stop's own consequences (Warn).
type logPolicy struct {
	mu       sync.Mutex
	leaving  map[string]*leftPeer // by raft address: peers that said goodbye
	stopping atomic.Bool          // this node is stopping cleanly
}

type leftPeer struct {
	name string
	gone bool // a dial failed since the goodbye: it has stopped
}

// peerLeft records that a peer said goodbye.
func (p *logPolicy) peerLeft(name, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leaving == nil {
		p.leaving = map[string]*leftPeer{}
	}
	p.leaving[addr] = &leftPeer{name: name}
}

// dialed notes the outcome of a Raft dial to addr. A peer that said goodbye
// is forgotten once it has been unreachable and is reachable again: it
// restarted. (Between its goodbye and its stop it still answers, while it
// hands over leadership.)
func (p *logPolicy) dialed(addr string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lp := p.leaving[addr]
	switch {
	case lp == nil:
	case err != nil:
		lp.gone = true
	case lp.gone:
		delete(p.leaving, addr)
	}
}

// left reports whether a peer, by address or name, said goodbye.
func (p *logPolicy) left(who string) bool {
	if who == "" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.leaving[who]; ok {
		return true
	}
	for _, lp := range p.leaving {
		if lp.name == who {
			return true
		}
	}
	return false
}

// hasLeft lists the peers that said goodbye, by address.
func (p *logPolicy) hasLeft() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]bool, len(p.leaving))
	for addr := range p.leaving {
		out[addr] = true
	}
	return out
}

func (p *logPolicy) level(level slog.Level, msg string, args []any) slog.Level {
	if p == nil {
		return level
	}
	switch {
	case p.stopping.Load() && msg == "peer has newer term, stopping replication":
		return slog.LevelInfo
	case level == slog.LevelWarn && msg == "heartbeat timeout reached, starting election":
		if last := argString(args, "last-leader-addr"); last == "" || p.left(last) {
			return slog.LevelInfo
		}
	case level == slog.LevelError && msg == "failed to decode incoming command":
		// The connection was closed by this node's own shutdown, or reset by
		// a peer that stopped.
		if err, _ := argValue(args, "error").(error); errors.Is(err, net.ErrClosed) || errors.Is(err, raft.ErrTransportShutdown) {
			return slog.LevelDebug
		} else if errors.Is(err, syscall.ECONNRESET) {
			return slog.LevelWarn
		}
	case level == slog.LevelError:
		for _, key := range []string{"peer", "target"} {
			if p.left(argString(args, key)) {
				return slog.LevelWarn
			}
		}
	}
	if level == slog.LevelError && p.stopping.Load() {
		return slog.LevelWarn
	}
	return level
}

// argValue finds key in an hclog argument list.
func argValue(args []any, key string) any {
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == key {
			return args[i+1]
		}
	}
	return nil
}

// argString finds key in an hclog argument list and returns it as an
// address or a name: raft.Server by its address.
func argString(args []any, key string) string {
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k != key {
			continue
		}
		switch v := args[i+1].(type) {
		case string:
			return v
		case raft.ServerAddress:
			return string(v)
		case raft.ServerID:
			return string(v)
		case raft.Server:
			return string(v.Address)
		case *raft.Server:
			if v != nil {
				return string(v.Address)
			}
		case fmt.Stringer:
			return v.String()
		}
		return ""
	}
	return ""
}
