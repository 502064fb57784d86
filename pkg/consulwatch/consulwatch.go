package consulwatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/api/watch"
	"github.com/hashicorp/go-hclog"
)

// Types are the watch types kvx runs, as consul watch names them.
var Types = []string{"key", "keyprefix", "services", "nodes", "service", "checks", "event"}

// Handler handles one result: body is the JSON Consul's watch gives its
// handler, index the watch's index (CONSUL_INDEX).
type Handler interface {
	Handle(ctx context.Context, index uint64, body []byte) error
}

// Config is one watch.
type Config struct {
	// Params are consul watch's: "type", and per type "key", "prefix",
	// "service", "tag", "passing", "state", "name", "stale", "datacenter",
	// "token".
	Params  map[string]any
	Handler Handler
	// StateFile keeps the last successfully handled result (empty: memory
	// only).
	StateFile string
	// Once handles the first result (unless the state file says it was
	// handled already) and returns the handler's error.
	Once bool
	// HandlerTimeout bounds one run of the handler (0: none).
	HandlerTimeout time.Duration
	// MinBackoff and MaxBackoff bound the retries of a failing handler
	// (defaults 1s and 1m).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger // nil discards
}

// ErrHandler wraps the failure of the handler in Once mode.
var ErrHandler = errors.New("handler failed")

// result is one answer of the watch.
type result struct {
	index uint64
	value any
}

// Validate checks the params as consul/api/watch does, before any request.
func Validate(params map[string]any) error {
	_, err := watch.Parse(clone(params))
	return err
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Run runs the watch until ctx ends (nil), or, with Once, until the first
// result is handled.
func Run(ctx context.Context, c *consulapi.Client, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	plan, err := watch.Parse(clone(cfg.Params))
	if err != nil {
		return err
	}
	st, err := loadState(cfg.StateFile, watchID(cfg.Params))
	if err != nil {
		return err
	}
	var (
		mu     sync.Mutex
		latest *result
		wake   = make(chan struct{}, 1)
	)
	plan.HybridHandler = func(bp watch.BlockingParamVal, v any) {
		idx, _ := bp.(watch.WaitIndexVal)
		mu.Lock()
		latest = &result{index: uint64(idx), value: v}
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	take := func() *result {
		mu.Lock()
		defer mu.Unlock()
		r := latest
		latest = nil
		return r
	}
	planDone := make(chan error, 1)
	go func() {
		planDone <- plan.RunWithClientAndHclog(c, hclog.New(&hclog.LoggerOptions{
			Name: "watch", Level: hclog.Warn, Output: slogWriter{cfg.Logger}}))
	}()
	defer func() { plan.Stop(); <-planDone }()
	w := &worker{cfg: cfg, st: st, typ: plan.Type}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-planDone:
			planDone <- err
			return fmt.Errorf("watch stopped: %w", err)
		case <-wake:
		}
		r := take()
		if r == nil {
			continue
		}
		for r != nil {
			next, err := w.handle(ctx, r, wake, take)
			if cfg.Once {
				return err
			}
			r = next
		}
	}
}

type worker struct {
	cfg Config
	st  *state
	typ string
}

// handle runs the handler on r until it succeeds, or a newer result comes
// (returned, to be handled next), or ctx ends.
func (w *worker) handle(ctx context.Context, r *result, wake <-chan struct{}, take func() *result) (*result, error) {
	value := r.value
	var ids []string
	if w.typ == "event" {
		events, _ := value.([]*consulapi.UserEvent)
		var fresh []*consulapi.UserEvent
		for _, e := range events {
			if !w.st.handledEvent(e.ID) {
				fresh = append(fresh, e)
				ids = append(ids, e.ID)
			}
		}
		if len(fresh) == 0 {
			w.cfg.Logger.Debug("no new events", "index", r.index)
			return nil, nil
		}
		value = fresh
	}
	body, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("encode the watch result: %w", err)
	}
	body = append(body, '\n')
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	if w.typ != "event" && hash == w.st.Hash {
		w.cfg.Logger.Info("result already handled", "index", r.index)
		return nil, nil
	}
	backoff := w.cfg.MinBackoff
	for {
		hctx, cancel := ctx, context.CancelFunc(func() {})
		if w.cfg.HandlerTimeout > 0 {
			hctx, cancel = context.WithTimeout(ctx, w.cfg.HandlerTimeout)
		}
		err := w.cfg.Handler.Handle(hctx, r.index, body)
		cancel()
		if err == nil {
			if w.typ == "event" {
				w.st.addEvents(ids)
			} else {
				w.st.Hash = hash
			}
			w.st.Index = r.index
			if err := w.st.save(); err != nil {
				w.cfg.Logger.Warn("save the watch state", "file", w.cfg.StateFile, "err", err)
			}
			return nil, nil
		}
		if w.cfg.Once {
			return nil, fmt.Errorf("%w: %w", ErrHandler, err)
		}
		w.cfg.Logger.Warn("handler failed, retrying", "index", r.index, "err", err, "retry", backoff)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-wake:
			if next := take(); next != nil {
				w.cfg.Logger.Info("a newer result supersedes the failed one", "index", next.index)
				if w.typ == "event" {
					// consul/api/watch gives only the events after the last
					// index: the ones that failed must not be dropped.
					next.value = mergeEvents(value.([]*consulapi.UserEvent), next.value)
				}
				return next, nil
			}
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, w.cfg.MaxBackoff)
	}
}

// StateName is a file name for the state of the watch with params: the
// same for the same watch, different for another.
func StateName(params map[string]any) string {
	sum := sha256.Sum256([]byte(watchID(params)))
	return hex.EncodeToString(sum[:8]) + ".json"
}

// watchID names a watch by its params, so a state file is not taken for
// another watch's.
func watchID(params map[string]any) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "token" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v;", k, params[k])
	}
	return b.String()
}

// slogWriter passes consul/api/watch's log lines to a slog logger.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = slogWriter{}

// mergeEvents returns failed followed by the events of next not among them.
func mergeEvents(failed []*consulapi.UserEvent, next any) []*consulapi.UserEvent {
	out := slices.Clone(failed)
	events, _ := next.([]*consulapi.UserEvent)
	for _, e := range events {
		if !slices.ContainsFunc(out, func(f *consulapi.UserEvent) bool { return f.ID == e.ID }) {
			out = append(out, e)
		}
	}
	return out
}
