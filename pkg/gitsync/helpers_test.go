package gitsync

import (
	"context"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// testRepo is a bare repository in a temp dir, served over file://.
type testRepo struct {
	t   testing.TB
	dir string
}

func newTestRepo(t testing.TB) *testRepo {
	return &testRepo{t: t, dir: filepath.Join(t.TempDir(), "config.git")}
}

func (r *testRepo) url() string { return "file://" + r.dir }

func (r *testRepo) commit(branch string, files map[string]string) string {
	r.t.Helper()
	b := make(map[string][]byte, len(files))
	for k, v := range files {
		b[k] = []byte(v)
	}
	sha, err := CommitFiles(r.dir, branch, b, "commit", false)
	if err != nil {
		r.t.Fatal(err)
	}
	return sha
}

// env is a server, a syncer on it, and a repository.
type env struct {
	t    testing.TB
	srv  *servertest.Server
	kv   *consulapi.KV
	repo *testRepo
	s    *Syncer
}

func newEnv(t testing.TB) *env {
	srv := servertest.Start(t)
	e := &env{t: t, srv: srv, kv: srv.Client.KV(), repo: newTestRepo(t)}
	e.s = &Syncer{KV: e.kv, CacheDir: t.TempDir()}
	return e
}

// repoConfig is a checked Repo for the env's repository.
func (e *env) repoConfig(modify func(*Repo)) *Repo {
	e.t.Helper()
	c := Config{Repos: []Repo{{Name: "app", URL: e.repo.url(), Mountpoint: "cfg"}}}
	if modify != nil {
		modify(&c.Repos[0])
	}
	if err := c.Check(); err != nil {
		e.t.Fatal(err)
	}
	return &c.Repos[0]
}

// sync runs one sync and returns the result of branch.
func (e *env) sync(r *Repo, branch string) Result {
	e.t.Helper()
	for _, res := range e.s.Sync(context.Background(), r) {
		if res.Branch == branch {
			return res
		}
	}
	e.t.Fatalf("no result for branch %s", branch)
	return Result{}
}

func (e *env) mustSync(r *Repo, branch string) Result {
	e.t.Helper()
	res := e.sync(r, branch)
	if res.Err != nil {
		e.t.Fatalf("sync %s: %v", branch, res.Err)
	}
	return res
}

// dump is every key under prefix with its value.
func (e *env) dump(prefix string) map[string]string {
	e.t.Helper()
	pairs, _, err := e.kv.List(prefix, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pairs {
		out[p.Key] = string(p.Value)
	}
	return out
}

func (e *env) put(key, value string) {
	e.t.Helper()
	if _, err := e.kv.Put(&consulapi.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(key string) (string, bool) {
	e.t.Helper()
	p, _, err := e.kv.Get(key, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if p == nil {
		return "", false
	}
	return string(p.Value), true
}

func keysOf(m map[string]string) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}
