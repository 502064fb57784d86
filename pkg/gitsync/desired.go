package gitsync

import (
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/kvxproject/kvx/pkg/transport"
)

// ErrRefused is matched (errors.Is) by a sync refused on purpose: a file
// over the value limit with large: refuse, or more deletes than the delete
// guard allows. Nothing was applied.
var ErrRefused = errors.New("refused")

// LargeLimit is the largest value written in a transaction. A bigger one
// goes to kvx's chunked layout (large: chunk) or refuses the sync (large:
// refuse): Consul caps a transaction's body at 512 KiB with values in
// base64, the limit kvx in uses too.
const LargeLimit = transport.InlineMax

// Entry is one key KV should hold.
type Entry struct {
	Value []byte
	File  string // the repository path it comes from
	Large bool   // stored in kvx's chunked layout under <key>/ (large: chunk)
}

// cachedFile is what a file became, by blob: a commit that leaves a file
// alone does not read or parse it again.
type cachedFile struct {
	blob   plumbing.Hash
	leaves []leaf
}

// desired maps the tree of commit c to the keys branch's prefix should
// hold. cache holds the previous sync's files; the returned cache holds
// this one's. A file that cannot be parsed fails the whole commit.
func (r *Repo) desired(st storer.EncodedObjectStorer, c *object.Commit, branch string, cache map[string]cachedFile) (map[string]Entry, map[string]cachedFile, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, nil, fmt.Errorf("tree of %s: %w", c.Hash, err)
	}
	prefix := r.Prefix(branch)
	keys := map[string]Entry{}
	next := make(map[string]cachedFile, len(cache))
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		name, e, err := w.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("walk %s: %w", c.Hash, err)
		}
		if e.Mode != filemode.Regular && e.Mode != filemode.Executable && e.Mode != filemode.Symlink && e.Mode != filemode.Deprecated {
			continue // directories, submodules
		}
		rel, ok := r.relative(name)
		if !ok {
			continue
		}
		leaves, err := r.fileLeaves(st, tree, name, e, cache, next)
		if err != nil {
			return nil, nil, err
		}
		base := prefix + r.keyName(rel)
		for _, l := range leaves {
			key := base
			if l.path != "" {
				key += "/" + l.path
			}
			if prev, dup := keys[key]; dup {
				return nil, nil, fmt.Errorf("key %s comes from both %s and %s", key, prev.File, name)
			}
			ent := Entry{Value: l.value, File: name}
			if len(l.value) > LargeLimit {
				if r.Large != LargeChunk {
					return nil, nil, fmt.Errorf("%w: %s: key %s would hold %s, over the %s a transaction carries; large: chunk (-large chunk) stores it in kvx's chunked layout", ErrRefused, name, key, transport.Size(int64(len(l.value))), transport.Size(LargeLimit))
				}
				ent.Large = true
			}
			keys[key] = ent
		}
	}
	if err := checkLargeOwnership(keys); err != nil {
		return nil, nil, err
	}
	return keys, next, nil
}

// relative is name below source_root, filtered by include and exclude.
func (r *Repo) relative(name string) (string, bool) {
	rel := name
	if r.SourceRoot != "" {
		var ok bool
		if rel, ok = strings.CutPrefix(name, r.SourceRoot+"/"); !ok {
			return "", false
		}
	}
	if len(r.Include) > 0 && !anyGlob(r.Include, rel) {
		return "", false
	}
	if anyGlob(r.Exclude, rel) {
		return "", false
	}
	return rel, true
}

// keyName is rel as a key below the prefix: without its extension with
// strip_ext (a name that is all extension, such as .env, keeps it).
func (r *Repo) keyName(rel string) string {
	if !r.StripExt {
		return rel
	}
	ext := path.Ext(rel)
	if stem := strings.TrimSuffix(path.Base(rel), ext); ext == "" || stem == "" {
		return rel
	}
	return strings.TrimSuffix(rel, ext)
}

// fileLeaves reads (or takes from cache) the keys one file becomes.
func (r *Repo) fileLeaves(st storer.EncodedObjectStorer, tree *object.Tree, name string, e object.TreeEntry, cache, next map[string]cachedFile) ([]leaf, error) {
	if cf, ok := cache[name]; ok && cf.blob == e.Hash {
		next[name] = cf
		return cf.leaves, nil
	}
	data, err := readBlob(st, tree, name, e)
	if err != nil {
		return nil, err
	}
	leaves := []leaf{{value: data}}
	if r.Expand && formatOf(name) != "" {
		if leaves, err = expand(name, data, r.Arrays); err != nil {
			return nil, err
		}
	}
	next[name] = cachedFile{blob: e.Hash, leaves: leaves}
	return leaves, nil
}

// readBlob reads a file's bytes; a symbolic link is read through (its
// target in the same tree), as git2consul did with a checkout.
func readBlob(st storer.EncodedObjectStorer, tree *object.Tree, name string, e object.TreeEntry) ([]byte, error) {
	for hops := 0; e.Mode == filemode.Symlink; hops++ {
		link, err := blobBytes(st, e.Hash)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		target := path.Join(path.Dir(name), string(link))
		f, err := tree.FindEntry(target)
		if err != nil || hops > 8 || strings.HasPrefix(target, "../") {
			return nil, fmt.Errorf("%s: a symbolic link to %s, which is not a file of the repository", name, link)
		}
		name, e = target, *f
	}
	b, err := blobBytes(st, e.Hash)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

func blobBytes(st storer.EncodedObjectStorer, h plumbing.Hash) ([]byte, error) {
	blob, err := object.GetBlob(st, h)
	if err != nil {
		return nil, err
	}
	rd, err := blob.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	b := make([]byte, 0, blob.Size)
	buf := make([]byte, 32<<10)
	for {
		n, err := rd.Read(buf)
		b = append(b, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// checkLargeOwnership refuses a key under a large key's folder: the
// chunked layout owns <key>/.
func checkLargeOwnership(keys map[string]Entry) error {
	var large []string
	for k, e := range keys {
		if e.Large {
			large = append(large, k+"/")
		}
	}
	if len(large) == 0 {
		return nil
	}
	sort.Strings(large)
	for k, e := range keys {
		i := sort.SearchStrings(large, k)
		if i > 0 && strings.HasPrefix(k, large[i-1]) {
			return fmt.Errorf("key %s (from %s) lies under %s, which the chunked layout of a large file owns", k, e.File, large[i-1])
		}
	}
	return nil
}
