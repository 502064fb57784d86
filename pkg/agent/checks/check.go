package checks

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

// prober runs one probe of a check, bounded by ctx, and says what it found.
type prober interface {
	probe(ctx context.Context) (status, output string)
}

// check is one running (or ready to run) check and its state.
type check struct {
	def       config.Check
	log       *slog.Logger
	notify    func(State)
	interval  time.Duration
	outputMax int

	emitMu sync.Mutex // held across a state change and its Notify, so Notify calls are in order
	mu     sync.Mutex // guards state and lastTTLOutput
	state  State

	lastTTLOutput string
	ttlReset      chan struct{} // a TTL update happened: restart the TTL

	// Consul's status handler counters; only the check's goroutine uses them.
	successes, failures int

	cancel context.CancelFunc // nil when not running
	done   chan struct{}
}

// newCheck makes a check of d whose state starts as from's status, output
// and since.
func (m *Manager) newCheck(d config.Check, from State) *check {
	c := &check{
		def:       d,
		log:       m.log.With("check", d.ID),
		notify:    m.opts.Notify,
		interval:  d.Interval,
		outputMax: d.OutputMaxSize,
		state:     State{CheckID: d.ID, Name: d.Name, ServiceID: d.ServiceID, Status: from.Status, Output: from.Output, Since: from.Since},
		ttlReset:  make(chan struct{}, 1),
		// Start as Consul's status handler starts: at the thresholds, so
		// the first result counts at once.
		successes: d.SuccessBeforePassing,
		failures:  d.FailuresBeforeCritical,
	}
	if c.outputMax <= 0 {
		c.outputMax = DefaultOutputMaxSize
	}
	if d.Kind() != config.KindTTL && c.interval < m.opts.MinInterval {
		c.log.Warn("check interval below the minimum, raised", "interval", c.interval, "minimum", m.opts.MinInterval)
		c.interval = m.opts.MinInterval
	}
	return c
}

// start runs the check in a goroutine under ctx; stop ends it.
func (c *check) start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(ctx)
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		c.run(ctx)
	}()
}

// stop ends the check's goroutine and waits for it; a no-op if not running.
func (c *check) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.cancel = nil
}

func (c *check) snapshot() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// set changes the state and notifies, if anything changed or force.
func (c *check) set(status, output string, force bool) {
	c.emitMu.Lock()
	defer c.emitMu.Unlock()
	output = truncateHead(output, c.outputMax)
	c.mu.Lock()
	changed := c.state.Status != status || c.state.Output != output
	if c.state.Status != status {
		c.state.Since = time.Now()
	}
	c.state.Status, c.state.Output = status, output
	st := c.state
	c.mu.Unlock()
	if changed {
		c.log.Debug("check changed", "status", status)
	}
	if changed || force {
		c.notify(st)
	}
}

// announce notifies the current state. The snapshot is taken under emitMu:
// a TTL update racing with the check's start is never overwritten by the
// state from before it.
func (c *check) announce() {
	c.emitMu.Lock()
	defer c.emitMu.Unlock()
	c.notify(c.snapshot())
}

// report feeds one probe result through Consul's thresholds:
// success_before_passing, failures_before_warning, failures_before_critical.
func (c *check) report(status, output string) {
	if status == config.StatusPassing || status == config.StatusWarning {
		c.successes++
		c.failures = 0
		if c.successes >= c.def.SuccessBeforePassing {
			c.set(status, output, false)
		}
		return
	}
	c.failures++
	c.successes = 0
	warnAt := c.def.FailuresBeforeWarning
	if warnAt == 0 {
		warnAt = c.def.FailuresBeforeCritical
	}
	switch {
	case c.failures >= c.def.FailuresBeforeCritical:
		c.set(status, output, false)
	case c.failures >= warnAt:
		c.set(config.StatusWarning, output, false)
	}
}

func (c *check) run(ctx context.Context) {
	c.announce() // every start is reported once
	if c.def.Kind() == config.KindTTL {
		c.runTTL(ctx)
		return
	}
	p := c.newProber()
	// A random first wait spreads checks out, as Consul staggers them.
	timer := time.NewTimer(rand.N(c.interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		status, output := p.probe(ctx)
		if ctx.Err() != nil {
			return // stopped mid-probe: the result means nothing
		}
		c.report(status, output)
		timer.Reset(c.interval)
	}
}

func (c *check) newProber() prober {
	switch c.def.Kind() {
	case config.KindScript:
		return &scriptProbe{args: c.def.Args, timeout: orDefault(c.def.Timeout, 30*time.Second), outputMax: c.outputMax}
	case config.KindHTTP:
		return newHTTPProbe(&c.def, orDefault(c.def.Timeout, 10*time.Second), c.outputMax)
	case config.KindTCP:
		return &tcpProbe{addr: c.def.TCP, timeout: orDefault(c.def.Timeout, 10*time.Second)}
	case config.KindGRPC:
		return newGRPCProbe(&c.def, orDefault(c.def.Timeout, 10*time.Second))
	}
	panic("checks: no prober for kind " + string(c.def.Kind()))
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// runTTL turns the check critical each time its TTL passes without an
// update.
func (c *check) runTTL(ctx context.Context) {
	timer := time.NewTimer(c.def.TTL)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.ttlReset:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(c.def.TTL)
		case <-timer.C:
			c.mu.Lock()
			last := c.lastTTLOutput
			c.mu.Unlock()
			out := "TTL expired"
			if last != "" {
				out += " (last output before timeout follows): " + last
			}
			c.log.Warn("check missed its TTL, now critical")
			c.set(config.StatusCritical, out, false)
		}
	}
}

// setTTL applies an update from the API and restarts the TTL.
func (c *check) setTTL(status, output string) string {
	output = ttlOutput(output, c.outputMax)
	c.mu.Lock()
	c.lastTTLOutput = output
	c.mu.Unlock()
	c.set(status, output, false)
	select {
	case c.ttlReset <- struct{}{}:
	default:
	}
	return output
}
