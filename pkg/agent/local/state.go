package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/checks"
	"github.com/kvxproject/kvx/pkg/agent/config"
)

// Errors the HTTP layer maps to Consul's statuses.
var (
	ErrUnknownService = errors.New("unknown service")
	ErrUnknownCheck   = errors.New("unknown check")
	ErrInvalid        = errors.New("invalid")
)

// Options configure a State.
type Options struct {
	// Node is the node this state is the agent of. With ManageNode the
	// sync registers it (an agent's node); without, the node is someone
	// else's to register (a server's node, registered by the leader) and
	// the sync waits for it.
	Node       Node
	ManageNode bool
	Datacenter string // shown in /v1/agent/services
	Catalog    Catalog
	// EnableScriptChecks allows checks with args, from files and the API.
	EnableScriptChecks bool
	// SyncInterval is the period of the full sync (0: one minute), jittered
	// by ±25%.
	SyncInterval time.Duration
	// MinCheckInterval is the shortest check interval (0: 1s, Consul's).
	MinCheckInterval time.Duration
	Logger           *slog.Logger
	// OnRegistered, if set, is called after every change of what was
	// registered through the API (see Registered), one call at a time.
	OnRegistered func(Registered)
	// Authorize, if set, resolves a request's token for the /v1/agent/
	// endpoints (nil: everything allowed).
	Authorize func(*http.Request) (Authz, error)
}

type source int

const (
	fromAPI source = iota
	fromConfig
)

type serviceEntry struct {
	svc    Service
	source source
}

type checkEntry struct {
	def    config.Check
	source source
}

// State is the agent state of one node. Create it with New, then Run it.
type State struct {
	opts Options
	log  *slog.Logger
	mgr  *checks.Manager

	opMu   sync.Mutex // serializes changes: they end in mgr.Replace
	hookMu sync.Mutex // serializes OnRegistered calls
	mu     sync.Mutex // guards the maps
	svcs   map[string]*serviceEntry
	chks   map[string]*checkEntry
	// maint holds the maintenance checks, which no runner updates.
	maint map[string]Check

	gen  atomic.Uint64 // bumped by every change the catalog must see
	kick chan struct{}

	roundMu   sync.Mutex
	lastGen   uint64 // the generation the last finished sync started at
	lastErr   error
	roundDone chan struct{} // closed when a sync ends, then replaced
	syncs     atomic.Int64  // syncs done, for tests and stats
	writes    atomic.Int64  // catalog writes made
}

// New returns a State with no services and checks.
func New(opts Options) *State {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = time.Minute
	}
	s := &State{opts: opts, log: opts.Logger, svcs: map[string]*serviceEntry{}, chks: map[string]*checkEntry{},
		maint: map[string]Check{}, kick: make(chan struct{}, 1), roundDone: make(chan struct{})}
	s.mgr = checks.New(checks.Options{Logger: opts.Logger, MinInterval: opts.MinCheckInterval,
		Notify: func(checks.State) { s.changed() }})
	return s
}

// NodeName is the name of the node this state is the agent of.
func (s *State) NodeName() string { return s.opts.Node.Node }

// Stats returns the number of syncs done and of catalog writes made.
func (s *State) Stats() (syncs, writes int64) { return s.syncs.Load(), s.writes.Load() }

// changed records a change for the catalog and wakes the sync.
func (s *State) changed() {
	s.gen.Add(1)
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run runs the checks, the sync and the reaper of critical services until
// ctx ends.
func (s *State) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = s.mgr.Run(ctx) }()
	go func() { defer wg.Done(); s.reap(ctx) }()
	s.syncLoop(ctx)
	wg.Wait()
	return nil
}

// applyChecks gives the manager the current definitions; opMu is held.
func (s *State) applyChecks() error {
	s.mu.Lock()
	defs := make([]config.Check, 0, len(s.chks))
	for _, c := range s.chks {
		defs = append(defs, c.def)
	}
	s.mu.Unlock()
	return s.mgr.Replace(defs)
}

// validCheck refuses what this agent cannot run.
func (s *State) validCheck(c *config.Check) error {
	if c.Kind() == config.KindScript && !s.opts.EnableScriptChecks {
		return fmt.Errorf("%w: script checks are disabled on this agent; enable them with -enable-script-checks", ErrInvalid)
	}
	if c.Kind() == "" {
		return fmt.Errorf("%w: check %q needs one of args, http, tcp, grpc or ttl", ErrInvalid, c.ID)
	}
	return nil
}

// AddService registers (or replaces) a service and its own checks: the
// service's previous checks go.
func (s *State) AddService(svc Service, own []config.Check) error {
	err := s.addService(svc, own, fromAPI)
	if err == nil {
		s.registeredChanged()
	}
	return err
}

// registeredChanged calls OnRegistered.
func (s *State) registeredChanged() {
	if s.opts.OnRegistered == nil {
		return
	}
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.opts.OnRegistered(s.Registered())
}

func (s *State) addService(svc Service, own []config.Check, src source) error {
	for i := range own {
		if err := s.validCheck(&own[i]); err != nil {
			return err
		}
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	s.svcs[svc.ID] = &serviceEntry{svc: svc, source: src}
	for id, c := range s.chks {
		if c.def.ServiceID == svc.ID {
			delete(s.chks, id)
		}
	}
	for _, c := range own {
		c.ServiceID = svc.ID
		s.chks[c.ID] = &checkEntry{def: c, source: src}
	}
	s.mu.Unlock()
	err := s.applyChecks()
	s.changed()
	return err
}

// RemoveService deregisters a service with its checks.
func (s *State) RemoveService(id string) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	if s.svcs[id] == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownService, id)
	}
	s.dropServiceLocked(id)
	s.mu.Unlock()
	err := s.applyChecks()
	s.changed()
	defer s.registeredChanged()
	return err
}

// dropServiceLocked forgets a service and its checks; mu is held.
func (s *State) dropServiceLocked(id string) {
	delete(s.svcs, id)
	delete(s.maint, ServiceMaintCheckID(id))
	for cid, c := range s.chks {
		if c.def.ServiceID == id {
			delete(s.chks, cid)
		}
	}
}

// AddCheck registers (or replaces) a check; its service, if any, must be
// registered.
func (s *State) AddCheck(c config.Check) error {
	if err := s.validCheck(&c); err != nil {
		return err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	if c.ServiceID != "" && s.svcs[c.ServiceID] == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: ServiceID %q does not exist", ErrInvalid, c.ServiceID)
	}
	s.chks[c.ID] = &checkEntry{def: c, source: fromAPI}
	s.mu.Unlock()
	err := s.applyChecks()
	s.changed()
	defer s.registeredChanged()
	return err
}

// RemoveCheck deregisters a check (a maintenance check too).
func (s *State) RemoveCheck(id string) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	_, isMaint := s.maint[id]
	if s.chks[id] == nil && !isMaint {
		s.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownCheck, id)
	}
	delete(s.chks, id)
	delete(s.maint, id)
	s.mu.Unlock()
	err := s.applyChecks()
	s.changed()
	defer s.registeredChanged()
	return err
}

// UpdateTTL sets a TTL check's status and output.
func (s *State) UpdateTTL(id, status, output string) error {
	if _, err := s.mgr.UpdateTTL(id, status, output); err != nil {
		switch {
		case errors.Is(err, checks.ErrUnknownCheck):
			return fmt.Errorf("%w %q", ErrUnknownCheck, id)
		case errors.Is(err, checks.ErrNotTTL):
			return fmt.Errorf("CheckID %q does not have associated TTL", id)
		}
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// LoadConfig makes defs the services and checks that come from config
// files: the ones of an earlier load that defs no longer has go; the
// ones registered through the API stay.
func (s *State) LoadConfig(defs *config.Definitions) error {
	for _, c := range defs.AllChecks() {
		if err := s.validCheck(&c); err != nil {
			return fmt.Errorf("%s: %w", c.File, err)
		}
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	for id, e := range s.svcs {
		if e.source == fromConfig {
			s.dropServiceLocked(id)
		}
	}
	for id, c := range s.chks {
		if c.source == fromConfig {
			delete(s.chks, id)
		}
	}
	for _, d := range defs.Services {
		s.svcs[d.ID] = &serviceEntry{svc: serviceFromConfig(&d), source: fromConfig}
	}
	for _, c := range defs.AllChecks() {
		s.chks[c.ID] = &checkEntry{def: c, source: fromConfig}
	}
	s.mu.Unlock()
	err := s.applyChecks()
	s.changed()
	return err
}

func serviceFromConfig(d *config.Service) Service {
	return Service{ID: d.ID, Service: d.Name, Tags: d.Tags, Address: d.Address, Meta: d.Meta, Port: d.Port,
		Weights: Weights{Passing: d.Weights.Passing, Warning: d.Weights.Warning}, EnableTagOverride: d.EnableTagOverride}
}

// SetNodeMaintenance puts the node in or out of maintenance mode.
func (s *State) SetNodeMaintenance(enable bool, reason string) {
	if reason == "" {
		reason = nodeMaintDefault
	}
	s.setMaint(NodeMaintCheckID, enable, Check{CheckID: NodeMaintCheckID, Name: nodeMaintName, Notes: reason,
		Status: StatusCritical, Type: "maintenance"})
}

// SetServiceMaintenance puts one service in or out of maintenance mode.
func (s *State) SetServiceMaintenance(id string, enable bool, reason string) error {
	s.mu.Lock()
	known := s.svcs[id] != nil
	s.mu.Unlock()
	if !known {
		return fmt.Errorf("%w %q", ErrUnknownService, id)
	}
	if reason == "" {
		reason = serviceMaintDefault
	}
	s.setMaint(ServiceMaintCheckID(id), enable, Check{CheckID: ServiceMaintCheckID(id), Name: serviceMaintName,
		Notes: reason, Status: StatusCritical, ServiceID: id, Type: "maintenance"})
	return nil
}

func (s *State) setMaint(id string, enable bool, c Check) {
	s.mu.Lock()
	_, on := s.maint[id]
	switch {
	case enable && !on:
		s.maint[id] = c
	case !enable && on:
		delete(s.maint, id)
	default:
		s.mu.Unlock()
		return // Consul: enabling twice keeps the first reason
	}
	s.mu.Unlock()
	s.changed()
}

// Services returns the node's services, in ID order.
func (s *State) Services() []Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Service, 0, len(s.svcs))
	for _, e := range s.svcs {
		out = append(out, e.svc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Service returns one service.
func (s *State) Service(id string) (Service, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.svcs[id]
	if e == nil {
		return Service{}, false
	}
	return e.svc, true
}

// Checks returns the node's checks with their current status and output,
// in ID order.
func (s *State) Checks() []Check {
	s.mu.Lock()
	entries := make([]*checkEntry, 0, len(s.chks))
	for _, c := range s.chks {
		entries = append(entries, c)
	}
	out := make([]Check, 0, len(s.chks)+len(s.maint))
	for _, c := range s.maint {
		out = append(out, c)
	}
	svcs := make(map[string]Service, len(s.svcs))
	for id, e := range s.svcs {
		svcs[id] = e.svc
	}
	s.mu.Unlock()
	for _, e := range entries {
		d := &e.def
		c := Check{CheckID: d.ID, Name: d.Name, Notes: d.Notes, ServiceID: d.ServiceID, Type: string(d.Kind()),
			Status: d.InitialStatus()}
		if d.Interval > 0 {
			c.Interval = d.Interval.String()
		}
		if d.Timeout > 0 {
			c.Timeout = d.Timeout.String()
		}
		if st, ok := s.mgr.Status(d.ID); ok {
			c.Status, c.Output = st.Status, st.Output
		}
		out = append(out, c)
	}
	for i := range out {
		if sv, ok := svcs[out[i].ServiceID]; ok {
			out[i].ServiceName, out[i].ServiceTags = sv.Service, sv.Tags
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CheckID < out[j].CheckID })
	return out
}

// reap deregisters the services whose check has been critical for longer
// than its deregister_critical_service_after.
func (s *State) reap(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		var due []string
		for _, c := range s.chks {
			after := c.def.DeregisterCriticalServiceAfter
			if after <= 0 || c.def.ServiceID == "" {
				continue
			}
			if st, ok := s.mgr.Status(c.def.ID); ok && st.Status == StatusCritical && time.Since(st.Since) > after {
				due = append(due, c.def.ServiceID)
			}
		}
		s.mu.Unlock()
		for _, id := range due {
			if err := s.RemoveService(id); err == nil {
				s.log.Info("deregistered a service critical for longer than its deregister_critical_service_after", "service", id)
			}
		}
	}
}

// SetDatacenter sets the datacenter /v1/agent/services shows.
func (s *State) SetDatacenter(dc string) {
	s.mu.Lock()
	s.opts.Datacenter = dc
	s.mu.Unlock()
}

func (s *State) datacenter() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.Datacenter
}

// NodeID is the ID of the node this state is the agent of.
func (s *State) NodeID() string { return s.opts.Node.ID }

// Registered is what was registered through the API (not from files and
// not maintenance): what an agent with a data dir keeps across restarts.
type Registered struct {
	Services []RegisteredService
	Checks   []config.Check // checks registered alone
}

// RegisteredService is a service registered through the API, with its
// own checks.
type RegisteredService struct {
	Service Service
	Checks  []config.Check
}

// Registered returns what was registered through the API, in ID order.
func (s *State) Registered() Registered {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out Registered
	byService := map[string][]config.Check{}
	for _, c := range s.chks {
		if c.source != fromAPI {
			continue
		}
		if e := s.svcs[c.def.ServiceID]; c.def.ServiceID != "" && e != nil && e.source == fromAPI {
			byService[c.def.ServiceID] = append(byService[c.def.ServiceID], c.def)
		} else {
			out.Checks = append(out.Checks, c.def)
		}
	}
	for id, e := range s.svcs {
		if e.source == fromAPI {
			cs := byService[id]
			sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
			out.Services = append(out.Services, RegisteredService{Service: e.svc, Checks: cs})
		}
	}
	sort.Slice(out.Services, func(i, j int) bool { return out.Services[i].Service.ID < out.Services[j].Service.ID })
	sort.Slice(out.Checks, func(i, j int) bool { return out.Checks[i].ID < out.Checks[j].ID })
	return out
}

// Restore registers again what Registered returned; entries that are no
// longer valid (a script check on an agent without script checks, a
// check of a service that is gone) are skipped and returned as errors.
func (s *State) Restore(r Registered) []error {
	var errs []error
	for _, sv := range r.Services {
		if err := s.AddService(sv.Service, sv.Checks); err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", sv.Service.ID, err))
		}
	}
	for _, c := range r.Checks {
		if err := s.AddCheck(c); err != nil {
			errs = append(errs, fmt.Errorf("check %q: %w", c.ID, err))
		}
	}
	return errs
}
