package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/gitsync"
	"github.com/kvxproject/kvx/pkg/transport"
)

// demoGit is the demo's git part: a commit in a local repository reaches
// KV through git2kv, and the fleet's files through kvx in and kvx out (the
// push render or hostsgen makes from KV, here of the file as committed).
func demoGit(ctx context.Context, w io.Writer, addr string, hosts []byte, push func([]byte, string) (transport.PushResult, error)) error {
	dir, err := os.MkdirTemp("", "kvx-demo-git-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	repoDir := filepath.Join(dir, "config.git")
	hosts = append([]byte("# from git, committed at "+time.Now().UTC().Format(time.RFC3339)+"\n"), hosts...)
	sha, err := gitsync.CommitFiles(repoDir, "main", map[string][]byte{
		"etc/hosts":    hosts,
		"app/app.json": []byte(`{"db": {"host": "db1.internal", "port": 5432}, "replicas": [1, 2]}`),
	}, "hosts and app settings", false)
	if err != nil {
		return fmt.Errorf("demo repository: %w", err)
	}
	fmt.Fprintf(w, "\ngit        commit %s in %s: etc/hosts, app/app.json\n", sha[:12], repoDir)

	kv, err := client.NewKV(client.Options{Address: addr})
	if err != nil {
		return err
	}
	c := &gitsync.Config{Repos: []gitsync.Repo{{Name: "config", URL: "file://" + repoDir, Mountpoint: "demo/git", Expand: true}}}
	if err := c.Check(); err != nil {
		return err
	}
	s := &gitsync.Syncer{KV: kv, CacheDir: filepath.Join(dir, "cache"), OneShot: true}
	res := s.Sync(ctx, &c.Repos[0])[0]
	if res.Err != nil {
		return res.Err
	}
	fmt.Fprintf(w, "git2kv     git2kv sync -repo file://%s -mountpoint demo/git -expand:\n           %s\n", repoDir, res.Summary())
	port, _, err := kv.Get("demo/git/config/main/app/app.json/db/port", nil)
	if err != nil || port == nil {
		return fmt.Errorf("demo: app.json was not expanded into KV: %v", err)
	}
	fmt.Fprintf(w, "           demo/git/config/main/app/app.json/db/port = %s; demo/git/config/main.ref = %s\n", port.Value, sha[:12])
	p, _, err := kv.Get("demo/git/config/main/etc/hosts", nil)
	if err != nil || p == nil {
		return fmt.Errorf("demo: etc/hosts is not in KV: %v", err)
	}
	if _, err := push(p.Value, "push 3     etc/hosts as git2kv wrote it to KV, pushed with kvx in:"); err != nil {
		return err
	}
	if res.Puts == 0 {
		return errors.New("demo: git2kv wrote nothing")
	}
	return nil
}
