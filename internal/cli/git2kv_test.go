package cli

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kvxproject/kvx/pkg/gitsync"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// gitRepo makes a bare repository with one commit of files on main.
func gitRepo(t *testing.T, files map[string]string) (dir string, commit func(map[string]string) string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "config.git")
	commit = func(files map[string]string) string {
		t.Helper()
		b := map[string][]byte{}
		for k, v := range files {
			b[k] = []byte(v)
		}
		sha, err := gitsync.CommitFiles(dir, "main", b, "commit", false)
		if err != nil {
			t.Fatal(err)
		}
		return sha
	}
	commit(files)
	return dir, commit
}

func TestGit2KVSync(t *testing.T) {
	srv := servertest.Start(t)
	dir, commit := gitRepo(t, map[string]string{"app.yaml": "db:\n  port: 5432\n", "a": "1", "b": "2", "c": "3"})
	cache := t.TempDir()
	args := []string{"git2kv", "sync", "-repo", "file://" + dir, "-branch", "main", "-mountpoint", "cfg", "-expand", "-cache-dir", cache}
	out, errOut, code := kvx(t, srv, "", args...)
	if code != 0 || !regexp.MustCompile(`config main at \w{12} -> cfg/config/main/: 4 put, 0 deleted, 0 unchanged in 1 transactions`).MatchString(out) {
		t.Fatalf("sync: %d %q %q", code, out, errOut)
	}
	if p, _, _ := srv.Client.KV().Get("cfg/config/main/app.yaml/db/port", nil); p == nil || string(p.Value) != "5432" {
		t.Fatalf("expanded key: %+v", p)
	}

	// A bad YAML file: exit 1, the file, line and column named, nothing
	// applied, the ref unchanged.
	ref, _, _ := srv.Client.KV().Get("cfg/config/main.ref", nil)
	commit(map[string]string{"app.yaml": "db:\n  port: [5433\n", "a": "changed", "b": "2", "c": "3"})
	_, errOut, code = kvx(t, srv, "", args...)
	if code != 1 || !strings.Contains(errOut, "app.yaml:2:9:") {
		t.Fatalf("bad yaml: %d %q", code, errOut)
	}
	if p, _, _ := srv.Client.KV().Get("cfg/config/main/a", nil); string(p.Value) != "1" {
		t.Fatal("a bad commit was half applied")
	}
	if now, _, _ := srv.Client.KV().Get("cfg/config/main.ref", nil); string(now.Value) != string(ref.Value) {
		t.Fatal("the ref moved")
	}

	// The delete guard: exit 3; -dry-run -force prints the plan.
	commit(map[string]string{"a": "1"})
	_, errOut, code = kvx(t, srv, "", args...)
	if code != exitRefused || !strings.Contains(errOut, "would delete 3 of the 4 keys") {
		t.Fatalf("guard: %d %q", code, errOut)
	}
	out, _, code = kvx(t, srv, "", append(args, "-dry-run", "-force")...)
	if code != 0 || !strings.Contains(out, "delete cfg/config/main/b") || !strings.Contains(out, "dry run: nothing written") {
		t.Fatalf("dry run: %d %q", code, out)
	}
	if p, _, _ := srv.Client.KV().Get("cfg/config/main/b", nil); p == nil {
		t.Fatal("dry run deleted")
	}
	out, _, code = kvx(t, srv, "", append(args, "-max-delete", "100%")...)
	if code != 0 || !strings.Contains(out, "0 put, 3 deleted") {
		t.Fatalf("-max-delete 100%%: %d %q", code, out)
	}
}

func TestGit2KVUsageErrors(t *testing.T) {
	srv := servertest.Start(t)
	conf := filepath.Join(t.TempDir(), "git2kv.yaml")
	os.WriteFile(conf, []byte("repos:\n  - url: file:///x\n    branchez: [main]\n"), 0o600)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"git2kv", "sync"}, "give -repo URL"},
		{[]string{"git2kv", "sync", "-config", conf}, "git2kv.yaml:3:5: unknown field \"branchez\""},
		{[]string{"git2kv", "sync", "-config", conf, "-expand"}, "-expand shapes the repository of -repo"},
		{[]string{"git2kv", "sync", "-repo", "file:///x", "-large", "huge"}, `large "huge"`},
		{[]string{"git2kv", "serve", "-repo", "file:///x", "-webhook-addr", "127.0.0.1:0"}, "-webhook-addr needs a secret"},
	}
	t.Setenv("GIT2KV_WEBHOOK_SECRET", "")
	for _, tt := range tests {
		_, errOut, code := kvx(t, srv, "", tt.args...)
		if code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: %d %q, want exit 2 and %q", tt.args, code, errOut, tt.want)
		}
	}
}

func TestGit2KVServeWebhook(t *testing.T) {
	srv := servertest.Start(t)
	dir, commit := gitRepo(t, map[string]string{"a": "1"})
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut servertest.Buffer
	done := make(chan int, 1)
	go func() {
		// As its own main would run it.
		done <- Main(ctx, "git2kv", []string{"serve", "-repo", "file://" + dir, "-cache-dir", t.TempDir(), "-interval", "1h",
			"-webhook-addr", "127.0.0.1:0", "-webhook-secret-file", secretFile, "-http-addr", srv.HTTPAddr()}, strings.NewReader(""), &out, &errOut)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, errOut.String())
		}
	}()
	addrRe := regexp.MustCompile(`msg="serving webhooks" addr=(127\.0\.0\.1:\d+)`)
	var addr string
	servertest.Eventually(t, "the webhook listener", func() bool {
		m := addrRe.FindStringSubmatch(errOut.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	get := func(key string) string {
		p, _, _ := srv.Client.KV().Get(key, nil)
		if p == nil {
			return ""
		}
		return string(p.Value)
	}
	servertest.Eventually(t, "the first sync", func() bool { return get("config/main/a") == "1" })
	commit(map[string]string{"a": "2"})
	body := []byte(`{"ref":"refs/heads/main"}`)
	for _, c := range []struct {
		secret string
		code   int
	}{{"wrong", http.StatusUnauthorized}, {"s3cret", http.StatusAccepted}} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhook", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", gitsync.SignGitHub([]byte(c.secret), body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != c.code {
			t.Fatalf("webhook signed with %q: %v %v, want %d", c.secret, resp.StatusCode, err, c.code)
		}
		resp.Body.Close()
	}
	servertest.Eventually(t, "the webhook's sync", func() bool { return get("config/main/a") == "2" })
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v", err)
	}
	resp.Body.Close()
}

// serve -lock: only the lock holder syncs; when it stops, the spare takes
// the lock and syncs what was committed since.
func TestGit2KVServeLock(t *testing.T) {
	srv := servertest.Start(t)
	dir, commit := gitRepo(t, map[string]string{"a": "1"})
	type instance struct {
		cancel context.CancelFunc
		done   chan int
		log    *servertest.Buffer
	}
	start := func() *instance {
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{cancel: cancel, done: make(chan int, 1), log: &servertest.Buffer{}}
		go func() {
			in.done <- Main(ctx, "git2kv", []string{"serve", "-repo", "file://" + dir, "-cache-dir", t.TempDir(), "-interval", "100ms",
				"-lock", "locks/git2kv", "-http-addr", srv.HTTPAddr()}, strings.NewReader(""), &servertest.Buffer{}, in.log)
		}()
		t.Cleanup(func() { cancel(); <-in.done })
		return in
	}
	get := func(key string) string {
		p, _, _ := srv.Client.KV().Get(key, nil)
		if p == nil {
			return ""
		}
		return string(p.Value)
	}
	a, b := start(), start()
	servertest.Eventually(t, "the first sync", func() bool { return get("config/main/a") == "1" })
	holder, spare := a, b
	if strings.Contains(b.log.String(), "holding the lock") {
		holder, spare = b, a
	}
	if !strings.Contains(holder.log.String(), "holding the lock") || strings.Contains(spare.log.String(), "holding the lock") {
		t.Fatalf("want exactly one holder:\n%s\n---\n%s", a.log.String(), b.log.String())
	}
	holder.cancel()
	if code := <-holder.done; code != 0 {
		t.Fatalf("the holder exited %d: %s", code, holder.log.String())
	}
	holder.done <- 0 // for the cleanup
	commit(map[string]string{"a": "2"})
	servertest.Eventually(t, "the spare syncing the new commit", func() bool { return get("config/main/a") == "2" })
	if !strings.Contains(spare.log.String(), "holding the lock") {
		t.Fatalf("the spare synced without the lock: %s", spare.log.String())
	}
}

func TestDemoShowsGitReachingTheFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs a server and a fleet")
	}
	out, errOut, code := run(t, context.Background(), "demo", "-nodes", "5", "-file", "../../testdata/hosts")
	if code != 0 {
		t.Fatalf("demo: %d %s", code, errOut)
	}
	for _, want := range []string{"git2kv sync -repo file://", "demo/git/config/main/app/app.json/db/port = 5432", "push 3     etc/hosts as git2kv wrote it", "5/5 nodes have it",
		"balance leastconn", "server node-004 10.0.0.5:8080 check", "push 4     kvx in -f"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output misses %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "5/5 nodes have it"); n != 6 { // 4, and the hosts step's 2 (demo_hosts.go)
		t.Fatalf("%d pushes reached every node, want 6:\n%s", n, out)
	}
}
