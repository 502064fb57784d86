package gitsync

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Service runs git2kv serve: every repository synced at start, every
// Interval, and when a verified webhook names it; /healthz and /v1/status
// report the last sync of each branch.
type Service struct {
	syncer *Syncer
	config *Config
	secret []byte
	logger *slog.Logger

	kick map[string]chan struct{} // per repository, one pending sync at most

	mu     sync.Mutex
	status map[string]BranchStatus // "repo\x00branch"
}

// BranchStatus is the last sync of a branch, as /v1/status shows it.
type BranchStatus struct {
	Repo            string    `json:"repo"`
	Branch          string    `json:"branch"`
	Prefix          string    `json:"prefix"`
	Commit          string    `json:"commit"`
	At              time.Time `json:"at"`
	TookMS          float64   `json:"took_ms"`
	Puts            int       `json:"puts"`
	Deletes         int       `json:"deletes"`
	Unchanged       int       `json:"unchanged"`
	DeletedUpstream bool      `json:"deleted_upstream,omitempty"`
	Error           string    `json:"error,omitempty"`
}

// NewService prepares a service; secret verifies webhooks (none: every
// webhook is refused).
func NewService(s *Syncer, c *Config, secret []byte, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	svc := &Service{syncer: s, config: c, secret: secret, logger: logger, kick: map[string]chan struct{}{}, status: map[string]BranchStatus{}}
	for _, r := range c.Repos {
		svc.kick[r.Name] = make(chan struct{}, 1)
	}
	return svc
}

// Run syncs every repository in its own goroutine until ctx ends, and
// waits for them.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range s.config.Repos {
		r := &s.config.Repos[i]
		wg.Go(func() { s.loop(ctx, r) })
	}
	wg.Wait()
	return nil
}

func (s *Service) loop(ctx context.Context, r *Repo) {
	t := time.NewTicker(s.config.Interval)
	defer t.Stop()
	for {
		s.record(s.syncer.Sync(ctx, r))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick[r.Name]:
		}
	}
}

// Trigger asks for a sync of the named repository (all when none), at
// once or right after the one running.
func (s *Service) Trigger(names ...string) {
	if len(names) == 0 {
		for n := range s.kick {
			names = append(names, n)
		}
	}
	for _, n := range names {
		if ch, ok := s.kick[n]; ok {
			select {
			case ch <- struct{}{}:
			default: // one is pending already: it will fetch this push too
			}
		}
	}
}

func (s *Service) record(results []Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, res := range results {
		st := BranchStatus{Repo: res.Repo, Branch: res.Branch, Prefix: res.Prefix, Commit: res.Commit, At: res.At,
			TookMS: float64(res.Took.Microseconds()) / 1000, Puts: res.Puts, Deletes: res.Deletes, Unchanged: res.Unchanged, DeletedUpstream: res.DeletedUpstream}
		if res.Err != nil {
			st.Error = res.Err.Error()
			if prev, ok := s.status[res.Repo+"\x00"+res.Branch]; ok {
				st.Commit = prev.Commit // still what KV holds
			}
		}
		s.status[res.Repo+"\x00"+res.Branch] = st
	}
}

// Status is the last sync of every branch, sorted.
func (s *Service) Status() []BranchStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BranchStatus, 0, len(s.status))
	for _, st := range s.status {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Repo != out[j].Repo {
			return out[i].Repo < out[j].Repo
		}
		return out[i].Branch < out[j].Branch
	})
	return out
}

// Handler serves POST /webhook (and /webhook/<repo>), GET /healthz and GET
// /v1/status.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", s.webhook)
	mux.HandleFunc("POST /webhook/{repo}", s.webhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		var failing []string
		for _, st := range s.Status() {
			if st.Error != "" {
				failing = append(failing, fmt.Sprintf("%s %s: %s", st.Repo, st.Branch, st.Error))
			}
		}
		if len(failing) > 0 {
			http.Error(w, strings.Join(failing, "\n"), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(s.Status())
	})
	return mux
}

func (s *Service) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	provider, push, err := verifyWebhook(r.Header, body, s.secret)
	if err != nil {
		s.logger.Warn("webhook refused", "provider", provider, "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if !push {
		io.WriteString(w, "verified; not a push event: nothing to do\n")
		return
	}
	var names []string
	if name := r.PathValue("repo"); name != "" {
		if _, ok := s.kick[name]; !ok {
			http.Error(w, "no repository "+name, http.StatusNotFound)
			return
		}
		names = []string{name}
	} else {
		names = webhookRepos(body, s.config.Repos)
	}
	if len(names) == 0 { // the payload names none of ours: fetch them all
		for _, r := range s.config.Repos {
			names = append(names, r.Name)
		}
	}
	s.Trigger(names...)
	s.logger.Info("webhook", "provider", provider, "repos", names)
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "fetching %s\n", strings.Join(names, ", "))
}
