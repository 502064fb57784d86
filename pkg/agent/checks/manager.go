package checks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

// Sentinel errors of UpdateTTL.
var (
	ErrUnknownCheck = errors.New("unknown check")
	ErrNotTTL       = errors.New("not a TTL check")
)

// State is a check's current state, as the agent API reports it.
type State struct {
	CheckID   string
	Name      string
	ServiceID string
	Status    string // passing, warning or critical
	Output    string
	// Since is when the check took its current status (for
	// deregister_critical_service_after); a change of output alone
	// does not move it.
	Since time.Time
}

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger // nil: discard
	// Notify is called when a check starts running and then whenever its
	// status or output changes. Calls for one check are made one at a
	// time, in order; calls for different checks may be concurrent. It
	// may call Status and Statuses, but not Replace or UpdateTTL.
	Notify func(State)
	// MinInterval is the shortest interval a check runs at; shorter ones
	// are raised to it with a warning. 0 means 1s, Consul's minimum.
	MinInterval time.Duration
}

// Manager runs a set of checks. Its zero value is not usable: call New.
type Manager struct {
	opts Options
	log  *slog.Logger

	replaceMu sync.Mutex // serializes Replace and Run's start and stop

	mu     sync.Mutex
	checks map[string]*check
	runCtx context.Context // non-nil while Run runs
}

// New returns a Manager with no checks.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinInterval <= 0 {
		opts.MinInterval = time.Second
	}
	if opts.Notify == nil {
		opts.Notify = func(State) {}
	}
	return &Manager{opts: opts, log: opts.Logger, checks: map[string]*check{}}
}

// Run runs the checks until ctx is done, then stops them all and waits for
// them; it returns ctx's error. Replace may be called before and while it
// runs.
func (m *Manager) Run(ctx context.Context) error {
	m.replaceMu.Lock()
	m.mu.Lock()
	if m.runCtx != nil {
		m.mu.Unlock()
		m.replaceMu.Unlock()
		return errors.New("checks: Run called twice")
	}
	m.runCtx = ctx
	for _, c := range m.checks {
		c.start(ctx)
	}
	m.mu.Unlock()
	m.replaceMu.Unlock()

	<-ctx.Done()

	m.replaceMu.Lock()
	defer m.replaceMu.Unlock()
	m.mu.Lock()
	running := make([]*check, 0, len(m.checks))
	for _, c := range m.checks {
		running = append(running, c)
	}
	m.runCtx = nil
	m.mu.Unlock()
	for _, c := range running {
		c.stop()
	}
	return ctx.Err()
}

// Replace makes defs the set of checks. A check whose definition is
// unchanged (by ID, ignoring the file it came from) keeps running with its
// state; a changed one restarts from the status and output it had; new
// ones start from their initial status; removed ones stop. Invalid
// definitions (an empty or repeated ID, no kind) are an error and change
// nothing.
func (m *Manager) Replace(defs []config.Check) error {
	want := make(map[string]config.Check, len(defs))
	for _, d := range defs {
		if d.ID == "" {
			return errors.New("replace checks: a check has no ID")
		}
		if _, dup := want[d.ID]; dup {
			return fmt.Errorf("replace checks: check ID %q given twice", d.ID)
		}
		if d.Kind() == "" {
			return fmt.Errorf("replace checks: check %q has no args, http, tcp, grpc or ttl", d.ID)
		}
		want[d.ID] = d
	}

	m.replaceMu.Lock()
	defer m.replaceMu.Unlock()

	m.mu.Lock()
	old := m.checks
	next := make(map[string]*check, len(want))
	var stop, start []*check
	for id, d := range want {
		prev, ok := old[id]
		switch {
		case ok && sameDefinition(prev.def, d):
			next[id] = prev
		case ok:
			c := m.newCheck(d, prev.snapshot())
			next[id], stop, start = c, append(stop, prev), append(start, c)
		default:
			c := m.newCheck(d, State{Status: d.InitialStatus(), Since: time.Now()})
			next[id], start = c, append(start, c)
		}
	}
	for id, c := range old {
		if _, ok := want[id]; !ok {
			stop = append(stop, c)
		}
	}
	m.checks = next
	runCtx := m.runCtx
	m.mu.Unlock()

	// Stop outside m.mu: a stopping check may be in Notify, which may
	// call Status.
	for _, c := range stop {
		c.stop()
	}
	if runCtx != nil {
		for _, c := range start {
			c.start(runCtx)
		}
	}
	return nil
}

// sameDefinition compares two definitions, ignoring which file they are in.
func sameDefinition(a, b config.Check) bool {
	a.File, b.File = "", ""
	return reflect.DeepEqual(a, b)
}

// Status returns the current state of one check.
func (m *Manager) Status(id string) (State, bool) {
	m.mu.Lock()
	c, ok := m.checks[id]
	m.mu.Unlock()
	if !ok {
		return State{}, false
	}
	return c.snapshot(), true
}

// Statuses returns the current state of every check, by ID.
func (m *Manager) Statuses() []State {
	m.mu.Lock()
	out := make([]State, 0, len(m.checks))
	cs := make([]*check, 0, len(m.checks))
	for _, c := range m.checks {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	for _, c := range cs {
		out = append(out, c.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CheckID < out[j].CheckID })
	return out
}

// UpdateTTL sets a TTL check's status and output and restarts its TTL, as
// /v1/agent/check/pass|warn|fail|update do. The output is capped as
// Consul caps it; the capped output is returned.
func (m *Manager) UpdateTTL(id, status, output string) (string, error) {
	switch status {
	case config.StatusPassing, config.StatusWarning, config.StatusCritical:
	default:
		return "", fmt.Errorf("update check %q: status %q is not passing, warning or critical", id, status)
	}
	m.mu.Lock()
	c, ok := m.checks[id]
	m.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("update check %q: %w", id, ErrUnknownCheck)
	}
	if c.def.Kind() != config.KindTTL {
		return "", fmt.Errorf("update check %q: %w", id, ErrNotTTL)
	}
	return c.setTTL(status, output), nil
}
