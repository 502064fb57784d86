package gitsync

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// Config is what git2kv syncs: several repositories, each with its
// branches, from a YAML file (LoadConfig) or built from flags.
type Config struct {
	CacheDir string        `yaml:"cache_dir"` // local clones, fetched not re-cloned
	Interval time.Duration `yaml:"interval"`  // serve: poll every repository this often
	Repos    []Repo        `yaml:"repos"`
}

// Repo is one repository and how its files become keys.
type Repo struct {
	Name     string   `yaml:"name"` // the repo segment of keys; default: the URL's last segment without .git
	URL      string   `yaml:"url"`
	Branches []string `yaml:"branches"` // default: main
	Tags     bool     `yaml:"tags"`     // every tag is synced as a branch is

	Mountpoint     string   `yaml:"mountpoint"`
	SkipBranchName bool     `yaml:"skip_branch_name"`
	SkipRepoName   bool     `yaml:"skip_repo_name"`
	SourceRoot     string   `yaml:"source_root"`
	Include        []string `yaml:"include"`
	Exclude        []string `yaml:"exclude"`
	Expand         bool     `yaml:"expand"`    // .json, .yaml, .yml, .properties: one key per leaf
	StripExt       bool     `yaml:"strip_ext"` // drop a file's extension from its key
	Arrays         string   `yaml:"arrays"`    // index (default) or skip, as git2consul did
	Large          string   `yaml:"large"`     // refuse (default) or chunk
	Keep           []string `yaml:"keep"`      // keys under the prefix that drift correction leaves alone
	MaxDelete      string   `yaml:"max_delete"`
	PruneBranches  bool     `yaml:"prune_branches"`

	Auth Auth `yaml:"auth"`
}

// Auth says how to reach a repository. Secrets come from files or the
// environment, never from the config or the command line.
type Auth struct {
	Username       string `yaml:"username"`
	PasswordFile   string `yaml:"password_file"` // a password or token (https)
	PasswordEnv    string `yaml:"password_env"`  // or the variable holding it
	SSHKeyFile     string `yaml:"ssh_key_file"`
	SSHKeyPassEnv  string `yaml:"ssh_key_passphrase_env"`
	KnownHostsFile string `yaml:"known_hosts_file"` // default: ~/.ssh/known_hosts
	CAFile         string `yaml:"ca_file"`          // extra CA bundle for https
}

// Defaults.
const (
	DefaultBranch    = "main"
	DefaultMaxDelete = "50%"
	DefaultInterval  = time.Minute
	ArraysIndex      = "index"
	ArraysSkip       = "skip"
	LargeRefuse      = "refuse"
	LargeChunk       = "chunk"
)

// LoadConfig reads a YAML config file. Errors name the file, line and
// column; unknown fields are errors.
func LoadConfig(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := yaml.UnmarshalWithOptions(b, &c, yaml.Strict()); err != nil {
		return nil, yamlError(file, err)
	}
	if len(c.Repos) == 0 {
		return nil, fmt.Errorf("%s: no repos", file)
	}
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &c, nil
}

// Check fills defaults and refuses what cannot be synced safely: a missing
// URL, duplicate names, an unknown option value, a bad glob, and branches
// whose prefixes are empty or overlap (one would delete the other's keys).
func (c *Config) Check() error {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Interval < 0 {
		return fmt.Errorf("interval %v is negative", c.Interval)
	}
	names := map[string]bool{}
	type owner struct{ repo, branch, prefix string }
	var prefixes []owner
	for i := range c.Repos {
		r := &c.Repos[i]
		if err := r.check(); err != nil {
			return fmt.Errorf("repos[%d]: %w", i, err)
		}
		if names[r.Name] {
			return fmt.Errorf("repos[%d]: name %q used twice", i, r.Name)
		}
		names[r.Name] = true
		for _, b := range r.Branches {
			p := r.Prefix(b)
			for _, o := range prefixes {
				if strings.HasPrefix(p, o.prefix) || strings.HasPrefix(o.prefix, p) {
					return fmt.Errorf("repo %s branch %s writes under %q, which overlaps %q of repo %s branch %s: one would delete the other's keys", r.Name, b, p, o.prefix, o.repo, o.branch)
				}
			}
			prefixes = append(prefixes, owner{r.Name, b, p})
		}
	}
	return nil
}

func (r *Repo) check() error {
	if r.URL == "" {
		return errors.New("url is required")
	}
	if r.Name == "" {
		r.Name = strings.TrimSuffix(path.Base(strings.TrimRight(r.URL, "/")), ".git")
	}
	if r.Name == "" || r.Name == "." || r.Name == "/" || strings.ContainsAny(r.Name, "/ \t\n") {
		return fmt.Errorf("name %q: give a name without slashes or spaces", r.Name)
	}
	if len(r.Branches) == 0 {
		r.Branches = []string{DefaultBranch}
	}
	seen := map[string]bool{}
	for _, b := range r.Branches {
		if err := checkRefName(b); err != nil {
			return err
		}
		if seen[b] {
			return fmt.Errorf("branch %q listed twice", b)
		}
		seen[b] = true
	}
	r.Mountpoint = strings.Trim(r.Mountpoint, "/")
	r.SourceRoot = strings.Trim(r.SourceRoot, "/")
	if err := cleanPath("mountpoint", r.Mountpoint); err != nil {
		return err
	}
	if err := cleanPath("source_root", r.SourceRoot); err != nil {
		return err
	}
	if r.SkipBranchName && (len(r.Branches) > 1 || r.Tags) {
		return errors.New("skip_branch_name with several branches or tags: they would write the same keys")
	}
	if r.Mountpoint == "" && r.SkipRepoName && r.SkipBranchName {
		return errors.New("no mountpoint and both skip_repo_name and skip_branch_name: that would sync into the root of KV")
	}
	switch r.Arrays {
	case "":
		r.Arrays = ArraysIndex
	case ArraysIndex, ArraysSkip:
	default:
		return fmt.Errorf("arrays %q: want index or skip", r.Arrays)
	}
	switch r.Large {
	case "":
		r.Large = LargeRefuse
	case LargeRefuse, LargeChunk:
	default:
		return fmt.Errorf("large %q: want refuse or chunk", r.Large)
	}
	if r.MaxDelete == "" {
		r.MaxDelete = DefaultMaxDelete
	}
	if _, err := ParseMaxDelete(r.MaxDelete); err != nil {
		return err
	}
	for _, globs := range [][]string{r.Include, r.Exclude, r.Keep} {
		for _, g := range globs {
			if _, err := matchGlob(g, ""); err != nil {
				return fmt.Errorf("glob %q: %w", g, err)
			}
		}
	}
	return nil
}

// checkRefName refuses a branch or tag name git would refuse, or one that
// cannot be a key segment.
func checkRefName(b string) error {
	if b == "" || strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") || strings.HasSuffix(b, ".lock") ||
		strings.Contains(b, "..") || strings.Contains(b, "//") || strings.ContainsAny(b, " ~^:?*[\\\t\n") {
		return fmt.Errorf("branch %q: not a valid branch name", b)
	}
	return nil
}

func cleanPath(what, p string) error {
	if p == "" {
		return nil
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%s %q: empty, . or .. segment", what, p)
		}
	}
	return nil
}

// Prefix is the key prefix branch writes under, with its trailing slash:
// [mountpoint/][repo/][branch/].
func (r *Repo) Prefix(branch string) string {
	parts := r.above()
	if !r.SkipBranchName {
		parts = append(parts, branch)
	}
	return strings.Join(parts, "/") + "/"
}

// RefKey is git2consul's marker of a completed sync, holding the commit
// SHA: [mountpoint/][repo/]<branch>.ref.
func (r *Repo) RefKey(branch string) string {
	return strings.Join(append(r.above(), branch+".ref"), "/")
}

// above are the key segments above the branch: [mountpoint, repo].
func (r *Repo) above() []string {
	var parts []string
	if r.Mountpoint != "" {
		parts = append(parts, r.Mountpoint)
	}
	if !r.SkipRepoName {
		parts = append(parts, r.Name)
	}
	return parts
}

// MaxDelete is the delete guard: a share of the prefix's keys (Percent) or
// a count.
type MaxDelete struct {
	Percent float64 // used when Count < 0
	Count   int
}

// ParseMaxDelete reads "50%" or "200".
func ParseMaxDelete(s string) (MaxDelete, error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 || v > 100 {
			return MaxDelete{}, fmt.Errorf("max_delete %q: want a share such as 50%% or a count", s)
		}
		return MaxDelete{Percent: v, Count: -1}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return MaxDelete{}, fmt.Errorf("max_delete %q: want a share such as 50%% or a count", s)
	}
	return MaxDelete{Count: n}, nil
}

// Allows reports whether deleting n of total keys is within the guard.
func (m MaxDelete) Allows(n, total int) bool {
	if m.Count >= 0 {
		return n <= m.Count
	}
	if total == 0 {
		return true
	}
	return float64(n)*100 <= m.Percent*float64(total)
}

func (m MaxDelete) String() string {
	if m.Count >= 0 {
		return strconv.Itoa(m.Count)
	}
	return strconv.FormatFloat(m.Percent, 'f', -1, 64) + "%"
}
