package gitsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/metrics"
)

// Syncer syncs repositories into KV. It keeps each repository's cache
// open and what each branch's files became, so a sync reads only the
// files a commit changed. Safe for concurrent use; syncs of one
// repository run one at a time.
type Syncer struct {
	KV       KV
	CacheDir string
	Node     string // recorded by chunked writes (default "git2kv")
	Force    bool   // past the delete guard
	DryRun   bool   // plan only
	// OneShot: the caller reports failures (git2kv sync prints them);
	// they are logged at debug level only.
	OneShot bool
	Logger  *slog.Logger
	Metrics metrics.Sink

	mu    sync.Mutex
	repos map[string]*repoState
}

type repoState struct {
	mu       sync.Mutex // one sync of a repository at a time
	src      *source
	branches map[string]*branchCache
}

type branchCache struct {
	head    plumbing.Hash
	desired map[string]Entry
	files   map[string]cachedFile
}

// Result is what one sync of one branch did.
type Result struct {
	Repo, Branch, Prefix string
	Commit               string
	Plan                 *Plan // nil when the sync failed before planning
	Puts, Deletes        int
	Unchanged            int
	Txns                 int
	DeletedUpstream      bool // the branch is gone upstream (its keys are left unless pruned)
	Pruned               bool
	DryRun               bool
	At                   time.Time
	Took                 time.Duration
	Err                  error
}

// conflictAttempts bounds the re-plans after another instance's write.
const conflictAttempts = 4

// Sync fetches r and syncs each of its branches (and tags), returning one
// result per branch; a fetch error is one result with no branch.
func (s *Syncer) Sync(ctx context.Context, r *Repo) []Result {
	st, err := s.state(r)
	if err == nil {
		st.mu.Lock()
		defer st.mu.Unlock()
		err = st.src.fetch(ctx)
	}
	if err != nil {
		res := Result{Repo: r.Name, At: time.Now(), Err: err}
		s.report(res)
		return []Result{res}
	}
	branches, tags, err := st.src.heads()
	if err != nil {
		res := Result{Repo: r.Name, At: time.Now(), Err: fmt.Errorf("%s: refs: %w", r.Name, err)}
		s.report(res)
		return []Result{res}
	}
	var out []Result
	for _, b := range r.Branches {
		var res Result
		if h, ok := branches[b]; ok {
			res = s.syncBranch(ctx, r, st, b, h)
		} else {
			res = s.missingBranch(ctx, r, b)
		}
		s.report(res)
		out = append(out, res)
	}
	names := make([]string, 0, len(tags))
	for t := range tags {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		res := s.syncBranch(ctx, r, st, t, tags[t])
		s.report(res)
		out = append(out, res)
	}
	return out
}

func (s *Syncer) state(r *Repo) (*repoState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.repos[r.Name]; ok && st.src.repo.URL == r.URL {
		st.src.repo = r
		return st, nil
	}
	src, err := openSource(s.CacheDir, r)
	if err != nil {
		return nil, err
	}
	if s.repos == nil {
		s.repos = map[string]*repoState{}
	}
	st := &repoState{src: src, branches: map[string]*branchCache{}}
	s.repos[r.Name] = st
	return st, nil
}

// syncBranch makes branch's prefix hold the tree of head.
func (s *Syncer) syncBranch(ctx context.Context, r *Repo, st *repoState, branch string, head plumbing.Hash) (res Result) {
	res = Result{Repo: r.Name, Branch: branch, Prefix: r.Prefix(branch), Commit: head.String(), At: time.Now(), DryRun: s.DryRun}
	defer func() { res.Took = time.Since(res.At) }()
	desired, err := s.desired(r, st, branch, head)
	if err != nil {
		res.Err = fmt.Errorf("%s %s at %s: %w", r.Name, branch, short(head.String()), err)
		return res
	}
	guard, _ := ParseMaxDelete(r.MaxDelete)
	for attempt := 1; ; attempt++ {
		actual, ref, err := s.read(ctx, r, branch)
		if err != nil {
			res.Err = err
			return res
		}
		p := makePlan(r, branch, head.String(), desired, actual, ref)
		res.Plan, res.Puts, res.Deletes, res.Unchanged = p, len(p.Puts), len(p.Deletes), p.Unchanged
		if !s.Force && !guard.Allows(len(p.Deletes), p.Existing) {
			res.Err = fmt.Errorf("%w: %s %s at %s would delete %d of the %d keys under %s, more than max_delete %s allows; -force to apply", ErrRefused, r.Name, branch, short(head.String()), len(p.Deletes), p.Existing, p.Prefix, guard)
			return res
		}
		if s.DryRun {
			return res
		}
		res.Txns, err = s.applier().apply(ctx, p)
		if errors.Is(err, ErrConflict) && attempt < conflictAttempts {
			s.log().Info("another writer moved the ref: planning again", "repo", r.Name, "branch", branch, "attempt", attempt)
			if err := sleep(ctx, time.Duration(attempt)*100*time.Millisecond); err != nil {
				res.Err = err
				return res
			}
			continue
		}
		res.Err = err
		return res
	}
}

// desired is the keys of branch at head, from the branch's cache when the
// head has not moved.
func (s *Syncer) desired(r *Repo, st *repoState, branch string, head plumbing.Hash) (map[string]Entry, error) {
	bc := st.branches[branch]
	if bc != nil && bc.head == head {
		return bc.desired, nil
	}
	c, err := st.src.commit(head)
	if err != nil {
		return nil, err
	}
	var files map[string]cachedFile
	if bc != nil {
		files = bc.files
	}
	desired, files, err := r.desired(st.src.git.Storer, c, branch, files)
	if err != nil {
		return nil, err
	}
	st.branches[branch] = &branchCache{head: head, desired: desired, files: files}
	return desired, nil
}

// read returns the pairs under branch's prefix and its ref key. The ref
// is read first: a write landing between the two reads then fails the
// ref's check, and the sync is planned again rather than applied stale.
func (s *Syncer) read(ctx context.Context, r *Repo, branch string) (consulapi.KVPairs, *consulapi.KVPair, error) {
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	ref, _, err := s.KV.Get(r.RefKey(branch), q)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", r.RefKey(branch), err)
	}
	pairs, _, err := s.KV.List(r.Prefix(branch), q)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", r.Prefix(branch), err)
	}
	return pairs, ref, nil
}

// missingBranch handles a configured branch the remote does not have: if
// it was synced before (its ref exists) it was deleted upstream, and its
// keys are left, or removed with prune_branches; otherwise it is an error.
func (s *Syncer) missingBranch(ctx context.Context, r *Repo, branch string) (res Result) {
	res = Result{Repo: r.Name, Branch: branch, Prefix: r.Prefix(branch), At: time.Now(), DryRun: s.DryRun}
	defer func() { res.Took = time.Since(res.At) }()
	actual, ref, err := s.read(ctx, r, branch)
	if err != nil {
		res.Err = err
		return res
	}
	if ref == nil {
		res.Err = fmt.Errorf("%s: no branch %s at %s", r.Name, branch, redact(r.URL))
		return res
	}
	res.DeletedUpstream = true
	res.Commit = string(ref.Value)
	if !r.PruneBranches {
		s.log().Warn("branch deleted upstream: its keys are left (prune_branches removes them)", "repo", r.Name, "branch", branch, "prefix", res.Prefix, "last", short(res.Commit))
		return res
	}
	p := pruneAll(r, branch, actual, ref)
	res.Plan, res.Deletes, res.Pruned = p, len(p.Deletes), true
	s.log().Warn("branch deleted upstream: removing its keys", "repo", r.Name, "branch", branch, "prefix", res.Prefix, "keys", len(p.Deletes))
	if !s.DryRun {
		res.Txns, res.Err = s.applier().apply(ctx, p)
	}
	return res
}

func (s *Syncer) applier() *applier {
	node := s.Node
	if node == "" {
		node = "git2kv"
	}
	return &applier{kv: s.KV, node: node, logger: s.log()}
}

func (s *Syncer) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// report logs a result and sends its metrics: sync time, keys put,
// deleted and unchanged, errors, and the synced commit as a tag of the
// git2kv.synced gauge (the time of the sync).
func (s *Syncer) report(res Result) {
	tags := []string{"repo:" + res.Repo}
	if res.Branch != "" {
		tags = append(tags, "branch:"+res.Branch)
	}
	m := s.Metrics
	if m == nil {
		m = metrics.Discard
	}
	attrs := []any{"repo", res.Repo, "branch", res.Branch, "commit", short(res.Commit), "puts", res.Puts, "deletes", res.Deletes, "unchanged", res.Unchanged, "txns", res.Txns, "took", res.Took.Round(time.Microsecond)}
	if res.Err != nil {
		m.Count("git2kv.errors", 1, tags...)
		level := slog.LevelError
		if s.OneShot {
			level = slog.LevelDebug
		}
		s.log().Log(context.Background(), level, "sync failed", append(attrs, "err", res.Err)...)
		return
	}
	m.Timing("git2kv.sync.time", res.Took, tags...)
	m.Count("git2kv.keys.put", int64(res.Puts), tags...)
	m.Count("git2kv.keys.deleted", int64(res.Deletes), tags...)
	m.Count("git2kv.keys.unchanged", int64(res.Unchanged), tags...)
	if res.Commit != "" && !res.DryRun {
		m.Gauge("git2kv.synced", float64(res.At.Unix()), append(tags, "sha:"+short(res.Commit))...)
	}
	level := slog.LevelDebug
	if res.Puts+res.Deletes > 0 || res.DeletedUpstream {
		level = slog.LevelInfo
	}
	s.log().Log(context.Background(), level, "synced", attrs...)
}

// Summary is a result in one line for people.
func (res Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", res.Repo, res.Branch)
	switch {
	case res.Err != nil:
		fmt.Fprintf(&b, ": %v", res.Err)
		return b.String()
	case res.DeletedUpstream && !res.Pruned:
		fmt.Fprintf(&b, ": deleted upstream; its keys under %s are left (-prune-branches removes them)", res.Prefix)
		return b.String()
	case res.Pruned:
		fmt.Fprintf(&b, ": deleted upstream; %d keys under %s removed", res.Deletes, res.Prefix)
	default:
		fmt.Fprintf(&b, " at %s -> %s: %d put, %d deleted, %d unchanged", short(res.Commit), res.Prefix, res.Puts, res.Deletes, res.Unchanged)
	}
	if res.DryRun {
		b.WriteString(" (dry run: nothing written)")
	} else {
		fmt.Fprintf(&b, " in %d transactions (%v)", res.Txns, res.Took.Round(time.Millisecond))
	}
	return b.String()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
