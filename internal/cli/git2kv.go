package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/gitsync"
	"github.com/kvxproject/kvx/pkg/metrics"
)

// git2kvOptions are the flags sync and serve share.
type git2kvOptions struct {
	common
	config   string
	repo     gitsync.Repo
	cacheDir string
	force    bool
	dryRun   bool
}

// repoFlags shape the one repository given by flags; -config excludes them.
var repoFlags = []string{"repo", "name", "branch", "tags", "mountpoint", "skip-branch-name", "skip-repo-name",
	"source-root", "include", "exclude", "expand", "strip-ext", "arrays", "keep", "prune-branches",
	"git-user", "git-password-file", "git-password-env", "ssh-key", "ssh-key-passphrase-env", "known-hosts", "ca-file"}

func (o *git2kvOptions) register(f *pflag.FlagSet) {
	r := &o.repo
	f.StringVar(&o.config, "config", "", "YAML file of repositories and branches to sync (instead of -repo)")
	f.StringVar(&r.URL, "repo", "", "repository URL: file://, https:// or ssh (one repository from flags)")
	f.StringVar(&r.Name, "name", "", "the repository's key segment (default: the URL's last segment without .git)")
	f.StringSliceVar(&r.Branches, "branch", nil, "branch to sync; repeat or comma-separate for several (default main)")
	f.BoolVar(&r.Tags, "tags", false, "sync every tag as a branch is synced")
	f.StringVar(&r.Mountpoint, "mountpoint", "", "key prefix above the repository's name")
	f.BoolVar(&r.SkipBranchName, "skip-branch-name", false, "leave the branch name out of keys")
	f.BoolVar(&r.SkipRepoName, "skip-repo-name", false, "leave the repository name out of keys")
	f.StringVar(&r.SourceRoot, "source-root", "", "sync only files under this directory, without it in their keys")
	f.StringSliceVar(&r.Include, "include", nil, "sync only files matching these globs (*, ?, [..] in a segment, ** across)")
	f.StringSliceVar(&r.Exclude, "exclude", nil, "do not sync files matching these globs")
	f.BoolVar(&r.Expand, "expand", false, "expand .json, .yaml/.yml and .properties files into one key per leaf")
	f.BoolVar(&r.StripExt, "strip-ext", false, "drop each file's extension from its key")
	f.StringVar(&r.Arrays, "arrays", gitsync.ArraysIndex, "with -expand: index (one key per element) or skip (git2consul's way)")
	f.StringVar(&r.Large, "large", gitsync.LargeRefuse, "a value over 256 KiB: refuse (the sync fails naming the file) or chunk (kvx's chunked layout, read by kvx out)")
	f.StringSliceVar(&r.Keep, "keep", nil, "globs of keys under the prefix that drift correction leaves alone")
	f.StringVar(&r.MaxDelete, "max-delete", gitsync.DefaultMaxDelete, "refuse a sync deleting more than this share (50%) or count of the prefix's keys")
	f.BoolVar(&r.PruneBranches, "prune-branches", false, "remove the keys of a branch deleted upstream (default: left, with a warning)")
	f.StringVar(&r.Auth.Username, "git-user", "", "https user name")
	f.StringVar(&r.Auth.PasswordFile, "git-password-file", "", "file holding the https password or token")
	f.StringVar(&r.Auth.PasswordEnv, "git-password-env", "", "environment variable holding the https password or token")
	f.StringVar(&r.Auth.SSHKeyFile, "ssh-key", "", "ssh private key file (default: the ssh agent)")
	f.StringVar(&r.Auth.SSHKeyPassEnv, "ssh-key-passphrase-env", "", "environment variable holding the key's passphrase")
	f.StringVar(&r.Auth.KnownHostsFile, "known-hosts", "", "known_hosts file (default: ~/.ssh/known_hosts)")
	f.StringVar(&r.Auth.CAFile, "ca-file", "", "extra CA bundle for https")
	f.StringVar(&o.cacheDir, "cache-dir", "", "where repositories are cached (default: the config's cache_dir, else the user cache dir/git2kv)")
	f.BoolVar(&o.force, "force", false, "apply a sync the delete guard refuses")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan (puts, deletes, unchanged count) and change nothing")
	o.common.register(f, withDogstatsd) // after -ca-file, which is the git remote's here
}

// load builds the config from -config or from the repository flags.
func (o *git2kvOptions) load(cmd *cobra.Command) (*gitsync.Config, error) {
	f := cmd.Flags()
	var c *gitsync.Config
	if o.config != "" {
		for _, name := range repoFlags {
			if f.Changed(name) {
				return nil, usageError{fmt.Errorf("-%s shapes the repository of -repo; with -config, set it in %s", name, o.config)}
			}
		}
		var err error
		if c, err = gitsync.LoadConfig(o.config); err != nil {
			return nil, usageError{err}
		}
		for i := range c.Repos { // flag > config
			if f.Changed("max-delete") {
				c.Repos[i].MaxDelete = o.repo.MaxDelete
			}
			if f.Changed("large") {
				c.Repos[i].Large = o.repo.Large
			}
		}
	} else {
		if o.repo.URL == "" {
			return nil, usageError{errors.New("give -repo URL (with -branch NAME) or -config FILE")}
		}
		c = &gitsync.Config{Repos: []gitsync.Repo{o.repo}}
		if err := c.Check(); err != nil {
			return nil, usageError{fmt.Errorf("-repo %s: %w", o.repo.URL, err)}
		}
	}
	if o.cacheDir != "" {
		c.CacheDir = o.cacheDir
	}
	if c.CacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, usageError{fmt.Errorf("no cache dir: %w (give -cache-dir)", err)}
		}
		c.CacheDir = filepath.Join(dir, "git2kv")
	}
	return c, nil
}

// syncer opens what a git2kv command works with; close releases it.
func (o *git2kvOptions) syncer(cmd *cobra.Command, c *gitsync.Config) (*gitsync.Syncer, *slog.Logger, func(), error) {
	logger, err := newLogger(cmd.ErrOrStderr(), o.logLevel, o.logJSON)
	if err != nil {
		return nil, nil, nil, err
	}
	kv, err := client.NewKV(client.Options{Address: o.httpAddr, Token: o.token, Datacenter: o.datacenter, TLS: o.tls.options()})
	if err != nil {
		return nil, nil, nil, usageError{err}
	}
	s := &gitsync.Syncer{KV: kv, CacheDir: c.CacheDir, Force: o.force, DryRun: o.dryRun, Logger: logger}
	closeFn := func() {}
	if o.dogstatsd != "" {
		d, err := metrics.NewDogstatsd(o.dogstatsd, "kvx.")
		if err != nil {
			return nil, nil, nil, usageError{err}
		}
		s.Metrics, closeFn = d, func() { d.Close() }
	}
	if host, err := os.Hostname(); err == nil {
		s.Node = "git2kv@" + host
	}
	return s, logger, closeFn, nil
}

func newGit2KVCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "git2kv",
		Short: "Sync git branches into KV: drift-correcting, exact deletes, atomic batches, webhooks",
		Long: `Make KV hold what a branch's head holds: keys <mountpoint>/<repo>/<branch>/<path>,
JSON, YAML and .properties files expanded with -expand, the commit's SHA in
<mountpoint>/<repo>/<branch>.ref. Keys added or edited by hand under the prefix
are put back (drift correction) unless -keep lists them; deletes are exact
keys, never a prefix.`,
	}
	cmd.AddCommand(newGit2KVSyncCmd(), newGit2KVServeCmd())
	return cmd
}

func newGit2KVSyncCmd() *cobra.Command {
	o := &git2kvOptions{}
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Sync once: exit 0 when every branch is in KV, 1 on an error, 3 when refused",
		Long: `Fetch each repository and make each branch's prefix hold its head. Exit 0
when every branch synced, 3 when a sync was refused (the delete guard, a file
over the value limit with -large refuse), 1 on any other error (a file that
does not parse names its line and column; nothing of that branch is written).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGit2KVSync(cmd, o) },
	}
	o.register(cmd.Flags())
	return cmd
}

func runGit2KVSync(cmd *cobra.Command, o *git2kvOptions) error {
	c, err := o.load(cmd)
	if err != nil {
		return err
	}
	s, _, closeFn, err := o.syncer(cmd, c)
	if err != nil {
		return err
	}
	defer closeFn()
	s.OneShot = true
	w := cmd.OutOrStdout()
	var failed, refused []error
	for i := range c.Repos {
		for _, res := range s.Sync(cmd.Context(), &c.Repos[i]) {
			switch {
			case errors.Is(res.Err, gitsync.ErrRefused):
				refused = append(refused, res.Err)
				continue
			case res.Err != nil:
				failed = append(failed, res.Err)
				continue
			}
			if o.dryRun && res.Plan != nil {
				res.Plan.Print(w)
			}
			fmt.Fprintln(w, res.Summary())
		}
	}
	switch {
	case len(failed) > 0:
		return errors.Join(append(failed, refused...)...)
	case len(refused) > 0:
		return fmt.Errorf("%w: %w", errRefused, errors.Join(refused...))
	}
	return nil
}

type git2kvServeOptions struct {
	git2kvOptions
	interval      time.Duration
	webhookAddr   string
	webhookSecret string
	lock          string
}

func newGit2KVServeCmd() *cobra.Command {
	o := &git2kvServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Keep syncing: every -interval and on verified webhooks",
		Long: `Sync every repository at start, every -interval, and when a push webhook
(GitHub, GitLab, Gitea, Bitbucket) with a valid secret arrives on
-webhook-addr: POST /webhook (the payload picks the repository; it is only a
trigger, the content always comes from the fetch) or /webhook/<name>. GET
/healthz and /v1/status report the last sync of each branch. Several
instances are safe: every transaction checks the branch's ref key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGit2KVServe(cmd, o) },
	}
	f := cmd.Flags()
	o.register(f)
	f.DurationVar(&o.interval, "interval", gitsync.DefaultInterval, "poll every repository this often (with -config: its interval, unless this flag is given)")
	f.StringVar(&o.webhookAddr, "webhook-addr", "", "serve webhooks, /healthz and /v1/status on this address")
	f.StringVar(&o.webhookSecret, "webhook-secret-file", "", "file holding the webhooks' secret (default: $GIT2KV_WEBHOOK_SECRET)")
	f.StringVar(&o.lock, "lock", "", "sync only while holding the lock on this prefix (consul lock's layout: PREFIX/.lock), so that of several serve instances exactly one syncs; the others serve /healthz and wait to take over")
	return cmd
}

func runGit2KVServe(cmd *cobra.Command, o *git2kvServeOptions) error {
	c, err := o.load(cmd)
	if err != nil {
		return err
	}
	if cmd.Flags().Changed("interval") || o.config == "" {
		c.Interval = o.interval
	}
	if c.Interval <= 0 {
		return usageError{fmt.Errorf("-interval %v: want a positive duration", c.Interval)}
	}
	var secret []byte
	if o.webhookAddr != "" {
		if secret, err = webhookSecret(o.webhookSecret); err != nil {
			return err
		}
	}
	s, logger, closeFn, err := o.syncer(cmd, c)
	if err != nil {
		return err
	}
	defer closeFn()
	svc := gitsync.NewService(s, c, secret, logger)
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	var wg sync.WaitGroup
	var serveErr error
	if o.webhookAddr != "" {
		ln, err := net.Listen("tcp", o.webhookAddr)
		if err != nil {
			return fmt.Errorf("-webhook-addr: %w", err)
		}
		hs := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
		logger.Info("serving webhooks", "addr", ln.Addr().String())
		wg.Go(func() {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				serveErr = fmt.Errorf("webhook server: %w", err)
				cancel()
			}
		})
		wg.Go(func() {
			<-ctx.Done()
			shut, done := context.WithTimeout(context.Background(), 5*time.Second)
			defer done()
			hs.Shutdown(shut)
		})
	}
	logger.Info("git2kv serving", "repos", len(c.Repos), "interval", c.Interval)
	var lockErr error
	if o.lock == "" {
		svc.Run(ctx)
	} else {
		api, err := client.New(client.Options{Address: o.httpAddr, Token: o.token, Datacenter: o.datacenter, TLS: o.tls.options()})
		if err != nil {
			cancel()
			wg.Wait()
			return usageError{err}
		}
		lockErr = whileLeader(ctx, api, o.lock, "kvx git2kv", logger, func(ctx context.Context) error {
			svc.Run(ctx)
			return nil
		})
	}
	cancel()
	wg.Wait()
	if serveErr != nil {
		return serveErr
	}
	return lockErr
}

// webhookSecret reads the secret from file, else $GIT2KV_WEBHOOK_SECRET;
// webhooks without one would be refused, so it is required.
func webhookSecret(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usageError{fmt.Errorf("-webhook-secret-file: %w", err)}
		}
		if s := strings.TrimRight(string(b), "\r\n"); s != "" {
			return []byte(s), nil
		}
		return nil, usageError{fmt.Errorf("-webhook-secret-file %s is empty", file)}
	}
	if s := os.Getenv("GIT2KV_WEBHOOK_SECRET"); s != "" {
		return []byte(s), nil
	}
	return nil, usageError{errors.New("-webhook-addr needs a secret: -webhook-secret-file FILE or GIT2KV_WEBHOOK_SECRET")}
}
