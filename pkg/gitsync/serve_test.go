package gitsync

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/servertest"
)

func TestVerifyWebhook(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"ref":"refs/heads/main"}`)
	good := hmacHex(secret, body)
	bad := hmacHex([]byte("other"), body)
	tests := []struct {
		name     string
		headers  map[string]string
		provider string
		push     bool
		ok       bool
	}{
		{"github push", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + good}, GitHub, true, true},
		{"github bad signature", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + bad}, GitHub, true, false},
		{"github unsigned", map[string]string{"X-GitHub-Event": "push"}, GitHub, true, false},
		{"github ping", map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + good}, GitHub, false, true},
		{"gitea push", map[string]string{"X-Gitea-Event": "push", "X-GitHub-Event": "push", "X-Gitea-Signature": good}, Gitea, true, true},
		{"gitea bad", map[string]string{"X-Gitea-Event": "push", "X-GitHub-Event": "push", "X-Gitea-Signature": bad, "X-Hub-Signature-256": "sha256=" + good}, Gitea, true, false},
		{"gitlab push", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "s3cret"}, GitLab, true, true},
		{"gitlab bad token", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}, GitLab, false, false},
		{"bitbucket push", map[string]string{"X-Event-Key": "repo:push", "X-Hub-Signature": "sha256=" + good}, Bitbucket, true, true},
		{"bitbucket server", map[string]string{"X-Event-Key": "repo:refs_changed", "X-Hub-Signature": "sha256=" + good}, Bitbucket, true, true},
		{"bitbucket bad", map[string]string{"X-Event-Key": "repo:push", "X-Hub-Signature": "sha256=" + bad}, Bitbucket, true, false},
		{"unknown", map[string]string{}, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			provider, push, err := verifyWebhook(h, body, secret)
			if (err == nil) != tt.ok || provider != tt.provider || (tt.ok && push != tt.push) {
				t.Fatalf("got %s push=%v err=%v", provider, push, err)
			}
		})
	}
	// No secret configured: nothing verifies.
	if _, _, err := verifyWebhook(http.Header{"X-Github-Event": {"push"}, "X-Hub-Signature-256": {"sha256=" + hmacHex(nil, body)}}, body, nil); err == nil {
		t.Fatal("a webhook verified without a secret")
	}
}

func TestWebhookRepos(t *testing.T) {
	repos := []Repo{{Name: "cfg", URL: "https://git.example.com/ops/cfg.git"}, {Name: "other", URL: "git@git.example.com:ops/other.git"}}
	tests := []struct {
		body string
		want []string
	}{
		{`{"repository":{"clone_url":"https://git.example.com/ops/cfg.git"}}`, []string{"cfg"}},
		{`{"repository":{"ssh_url":"ssh://git@git.example.com/ops/other"}}`, []string{"other"}},
		{`{"project":{"git_ssh_url":"git@git.example.com:ops/cfg.git"}}`, []string{"cfg"}},
		{`{"repository":{"full_name":"ops/other"}}`, []string{"other"}},
		{`{"repository":{"full_name":"ops/unknown"}}`, nil},
		{`not json`, nil},
	}
	for _, tt := range tests {
		if got := webhookRepos([]byte(tt.body), repos); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.body, got, tt.want)
		}
	}
}

// startService runs a service on e's repository until the test ends.
func startService(t testing.TB, e *env, s *Syncer, secret string, modify func(*Repo)) (*Service, *httptest.Server) {
	t.Helper()
	c := &Config{Interval: time.Hour, Repos: []Repo{*e.repoConfig(modify)}}
	svc := NewService(s, c, []byte(secret), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(func() { hs.Close(); cancel(); <-done })
	return svc, hs
}

func post(t *testing.T, url string, headers map[string]string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestServeWebhookAndStatus(t *testing.T) {
	e := newEnv(t)
	first := e.repo.commit("main", map[string]string{"a": "1"})
	svc, hs := startService(t, e, e.s, "s3cret", func(r *Repo) { r.Expand = true })
	servertest.Eventually(t, "first sync", func() bool {
		st := svc.Status()
		return len(st) == 1 && st[0].Commit == first
	})
	second := e.repo.commit("main", map[string]string{"a": "2"})
	body := []byte(`{"ref":"refs/heads/main","repository":{"clone_url":"` + e.repo.url() + `"}}`)

	code, msg := post(t, hs.URL+"/webhook", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": SignGitHub([]byte("wrong"), body)}, body)
	if code != http.StatusUnauthorized || !strings.Contains(msg, "does not match") {
		t.Fatalf("bad signature: %d %q", code, msg)
	}
	if len(svc.kick["app"]) != 0 {
		t.Fatal("a refused webhook queued a sync")
	}
	code, msg = post(t, hs.URL+"/webhook", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": SignGitHub([]byte("s3cret"), body)}, body)
	if code != http.StatusAccepted || !strings.Contains(msg, "app") {
		t.Fatalf("good signature: %d %q", code, msg)
	}
	servertest.Eventually(t, "the webhook's sync", func() bool { v, _ := e.get("cfg/app/main/a"); return v == "2" })
	servertest.Eventually(t, "status", func() bool { return svc.Status()[0].Commit == second })

	resp, err := http.Get(hs.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st []BranchStatus
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if len(st) != 1 || st[0].Commit != second || st[0].Branch != "main" || st[0].Prefix != "cfg/app/main/" {
		t.Fatalf("/v1/status: %+v", st)
	}
	resp, err = http.Get(hs.URL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	// A bad commit makes /healthz say so, naming the file.
	e.repo.commit("main", map[string]string{"a": "3", "broken.json": "{"})
	svc.Trigger()
	servertest.Eventually(t, "the failed sync", func() bool { return svc.Status()[0].Error != "" })
	resp, _ = http.Get(hs.URL + "/healthz")
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(b.String(), "broken.json:1:1") {
		t.Fatalf("/healthz after a bad commit: %d %q", resp.StatusCode, b.String())
	}
	if got := svc.Status()[0].Commit; got != second {
		t.Fatalf("status commit %s after a failed sync, want %s", got, second)
	}
}

func TestTwoServeInstancesWriteOnce(t *testing.T) {
	e := newEnv(t)
	files := map[string]string{}
	for i := range 50 {
		files[string(rune('a'+i%26))+strings.Repeat("x", i)] = "v"
	}
	sha := e.repo.commit("main", files)
	a, _ := startService(t, e, e.s, "x", nil)
	b, _ := startService(t, e, &Syncer{KV: e.kv, CacheDir: t.TempDir()}, "x", nil)
	for _, svc := range []*Service{a, b} {
		servertest.Eventually(t, "both synced", func() bool {
			st := svc.Status()
			return len(st) == 1 && st[0].Commit == sha && st[0].Error == ""
		})
	}
	pairs, _, err := e.kv.List("cfg/app/", nil)
	if err != nil || len(pairs) != 51 {
		t.Fatalf("%d keys, %v", len(pairs), err)
	}
	for _, p := range pairs {
		if p.CreateIndex != p.ModifyIndex {
			t.Fatalf("%s written twice", p.Key)
		}
	}
	if sa, sb := a.Status()[0], b.Status()[0]; sa.Puts+sb.Puts != 50 {
		t.Fatalf("puts %d + %d, want 50 in all", sa.Puts, sb.Puts)
	}
}
