package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kvxproject/kvx/pkg/agent/config"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/consulwatch"
)

// The watches of the config dir ({"watches": [...]}, Consul's agent
// format, script and http handlers) run in the agent, against its own HTTP
// API as Consul's do; each keeps its state (the result it last handled, the
// events it ran for) in <data-dir>/watches/, so a restart does not run a
// handler again for what it already handled. A reload replaces them.

// validateWatch checks one "watches" entry as the agent will run it.
func validateWatch(params map[string]any) error {
	_, err := consulwatch.FromAgentConfig(params, io.Discard, io.Discard)
	return err
}

// watchRunner runs the current set of watches.
type watchRunner struct {
	mu     sync.Mutex
	ctx    context.Context // the agent's run; nil before Run
	defs   []config.Watch
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// set replaces the watches; while the agent runs, the old ones stop and
// the new ones start.
func (a *Agent) setWatches(defs []config.Watch) {
	w := &a.watches
	w.mu.Lock()
	defer w.mu.Unlock()
	w.defs = defs
	if w.ctx != nil {
		a.restartWatches()
	}
}

// runWatches starts the watches for the agent's run, and stops them when
// ctx ends.
func (a *Agent) runWatches(ctx context.Context) {
	w := &a.watches
	w.mu.Lock()
	w.ctx = ctx
	a.restartWatches()
	w.mu.Unlock()
	<-ctx.Done()
	w.mu.Lock()
	w.ctx = nil
	w.mu.Unlock()
	w.wg.Wait()
}

// restartWatches stops the running watches and starts w.defs (under w.mu).
func (a *Agent) restartWatches() {
	w := &a.watches
	if w.cancel != nil {
		w.cancel()
		w.wg.Wait()
		w.cancel = nil
	}
	if len(w.defs) == 0 {
		return
	}
	self, err := a.selfClient(w.ctx)
	if err != nil {
		return
	}
	// Watches read with the agent's token, as Consul's use its default one.
	self.Token = a.opts.ACLAgentToken
	c, err := client.New(self)
	if err != nil {
		a.log.Error("watches: client of the agent's API", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.cancel = cancel
	for _, d := range w.defs {
		log := a.log.With("watch", d.File+": "+d.Path)
		out := &logWriter{log: log}
		cfg, err := consulwatch.FromAgentConfig(d.Params, out, out)
		if err != nil { // validated when loaded; a reload replaced the file since
			log.Error("watch not started", "err", err)
			continue
		}
		cfg.Logger = log
		if a.opts.DataDir != "" {
			dir := filepath.Join(a.opts.DataDir, "watches")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				log.Error("watch state dir", "err", err)
			} else {
				cfg.StateFile = filepath.Join(dir, consulwatch.StateName(cfg.Params))
			}
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			if err := consulwatch.Run(ctx, c, cfg); err != nil && ctx.Err() == nil {
				log.Error("watch stopped", "err", err)
			}
		}()
	}
	a.log.Info("watches started", "count", len(w.defs))
}

// logWriter logs a handler's output, line by line.
type logWriter struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.log.Info("handler output", "line", string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}
