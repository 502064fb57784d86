package gitsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// source is a repository's local cache: a bare repository under the cache
// directory, fetched on every sync, never cloned again.
type source struct {
	repo *Repo
	dir  string
	git  *git.Repository
}

const remoteName = "origin"

// openSource opens (or creates) the cache of r under cacheDir. The
// directory's name carries a hash of the URL, so two repositories never
// share one and a changed URL starts a fresh cache.
func openSource(cacheDir string, r *Repo) (*source, error) {
	sum := sha256.Sum256([]byte(r.URL))
	dir := filepath.Join(cacheDir, r.Name+"-"+hex.EncodeToString(sum[:6]))
	g, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(cacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("cache dir: %w", err)
		}
		g, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	if _, err := g.Remote(remoteName); errors.Is(err, git.ErrRemoteNotFound) {
		_, err = g.CreateRemote(&gitconfig.RemoteConfig{Name: remoteName, URLs: []string{r.URL}})
		if err != nil {
			return nil, fmt.Errorf("cache %s: %w", dir, err)
		}
	}
	return &source{repo: r, dir: dir, git: g}, nil
}

// fetch brings the cache up to the remote: every branch, force-pushes
// included (the refspecs force), branches deleted upstream pruned, and
// tags when the repository syncs them.
func (s *source) fetch(ctx context.Context) error {
	auth, ca, err := s.repo.Auth.method(s.repo.URL)
	if err != nil {
		return fmt.Errorf("%s: %w", s.repo.Name, err)
	}
	specs := []gitconfig.RefSpec{"+refs/heads/*:refs/remotes/origin/*"}
	if s.repo.Tags {
		specs = append(specs, "+refs/tags/*:refs/tags/*")
	}
	err = s.git.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName, RemoteURL: s.repo.URL, RefSpecs: specs, Auth: auth, CABundle: ca,
		Tags: git.NoTags, Force: true, Prune: true,
	})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate), errors.Is(err, transport.ErrEmptyRemoteRepository):
		return nil
	}
	return fmt.Errorf("fetch %s: %w", redact(s.repo.URL), err)
}

// heads returns the commit of every branch (and tag, when synced) in the
// cache, by name.
func (s *source) heads() (branches, tags map[string]plumbing.Hash, err error) {
	branches, tags = map[string]plumbing.Hash{}, map[string]plumbing.Hash{}
	refs, err := s.git.References()
	if err != nil {
		return nil, nil, err
	}
	defer refs.Close()
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		name := ref.Name().String()
		switch {
		case strings.HasPrefix(name, "refs/remotes/origin/"):
			b := strings.TrimPrefix(name, "refs/remotes/origin/")
			if b != "HEAD" && ref.Type() == plumbing.HashReference {
				branches[b] = ref.Hash()
			}
		case s.repo.Tags && ref.Name().IsTag():
			h := ref.Hash()
			if tag, err := s.git.TagObject(h); err == nil { // annotated: peel
				c, err := tag.Commit()
				if err != nil {
					return nil // a tag of a tree or blob: not syncable
				}
				h = c.Hash
			}
			tags[ref.Name().Short()] = h
		}
		return nil
	})
	return branches, tags, err
}

func (s *source) commit(h plumbing.Hash) (*object.Commit, error) {
	c, err := s.git.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

// method builds the git transport's authentication for url, and the extra
// CA bundle. Secrets are read from files or the environment.
func (a Auth) method(url string) (transport.AuthMethod, []byte, error) {
	var ca []byte
	if a.CAFile != "" {
		b, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("ca_file: %w", err)
		}
		ca = b
	}
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, nil, fmt.Errorf("url %s: %w", redact(url), err)
	}
	switch ep.Protocol {
	case "http", "https":
		secret, err := a.secret()
		if err != nil {
			return nil, nil, err
		}
		if a.Username == "" && secret == "" {
			return nil, ca, nil
		}
		user := a.Username
		if user == "" {
			user = "git" // a token as the password: GitHub, GitLab, Gitea and Bitbucket take any user name
		}
		return &githttp.BasicAuth{Username: user, Password: secret}, ca, nil
	case "ssh":
		if a.SSHKeyFile == "" {
			return nil, ca, nil // go-git uses the ssh agent
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		pass := ""
		if a.SSHKeyPassEnv != "" {
			pass = os.Getenv(a.SSHKeyPassEnv)
		}
		pk, err := gitssh.NewPublicKeysFromFile(user, a.SSHKeyFile, pass)
		if err != nil {
			return nil, nil, fmt.Errorf("ssh key %s: %w", a.SSHKeyFile, err)
		}
		var files []string
		if a.KnownHostsFile != "" {
			files = []string{a.KnownHostsFile}
		}
		cb, err := gitssh.NewKnownHostsCallback(files...)
		if err != nil {
			return nil, nil, fmt.Errorf("known_hosts: %w", err)
		}
		pk.HostKeyCallback = cb
		return pk, ca, nil
	}
	return nil, ca, nil
}

// secret is the https password or token: from PasswordFile, else the
// variable PasswordEnv names.
func (a Auth) secret() (string, error) {
	if a.PasswordFile != "" {
		b, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if a.PasswordEnv != "" {
		v, ok := os.LookupEnv(a.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("password_env: %s is not set", a.PasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

// redact drops a password from a URL before it is logged or printed.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok || strings.Contains(userinfo, "/") {
		return url
	}
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + host
	}
	return url
}
