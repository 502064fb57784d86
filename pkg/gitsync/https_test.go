package gitsync

import (
	"encoding/pem"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHTTPSWithBasicAuth fetches over https from git's own smart HTTP
// server (git http-backend, installed by .ci/run) behind basic auth, with
// the password from the environment and the server's CA from a file.
func TestHTTPSWithBasicAuth(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed (.ci/run installs it)")
	}
	e := newEnv(t)
	root := filepath.Dir(e.repo.dir)
	sha := e.repo.commit("main", map[string]string{"app.json": `{"port": 8080}`, "bin": "\x00\xff"})
	backend := &cgi.Handler{
		Path: gitBin, Args: []string{"http-backend"}, Root: "/git",
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "deploy" || p != "t0ken" {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	defer hs.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_GIT_PASSWORD", "t0ken")
	r := e.repoConfig(func(r *Repo) {
		r.URL = hs.URL + "/git/config.git"
		r.Expand = true
		r.Auth = Auth{Username: "deploy", PasswordEnv: "TEST_GIT_PASSWORD", CAFile: caFile}
	})
	res := e.mustSync(r, "main")
	if res.Commit != sha {
		t.Fatalf("synced %s, want %s", res.Commit, sha)
	}
	if v, _ := e.get("cfg/app/main/app.json/port"); v != "8080" {
		t.Fatalf("port = %q", v)
	}
	if v, _ := e.get("cfg/app/main/bin"); v != "\x00\xff" {
		t.Fatalf("binary = %q", v)
	}
	// A second sync fetches into the same cache: nothing to write.
	if res := e.mustSync(r, "main"); res.Puts != 0 {
		t.Fatalf("second sync put %d", res.Puts)
	}
	// A wrong password fails the fetch, naming the repository, and
	// never prints the secret.
	t.Setenv("TEST_GIT_PASSWORD", "wrong")
	res = e.sync(r, "")
	if res.Err == nil || !strings.Contains(res.Err.Error(), "fetch "+hs.URL) || strings.Contains(res.Err.Error(), "wrong") {
		t.Fatalf("bad password: %v", res.Err)
	}
	// Without the CA the certificate is refused.
	r.Auth.CAFile = ""
	t.Setenv("TEST_GIT_PASSWORD", "t0ken")
	if res := e.sync(r, ""); res.Err == nil || !strings.Contains(res.Err.Error(), "certificate") {
		t.Fatalf("unknown CA: %v", res.Err)
	}
}
