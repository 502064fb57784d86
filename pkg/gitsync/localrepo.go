package gitsync

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// CommitFiles writes a commit whose tree is exactly files (path -> bytes)
// on branch of the bare repository at dir, created when missing, and
// returns its SHA. The commit's parent is the branch's head unless orphan
// (a force-push's rewritten history). The demo and tests make their
// repositories with it; no working tree and no git binary are needed.
func CommitFiles(dir, branch string, files map[string][]byte, message string, orphan bool) (string, error) {
	g, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		g, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return "", fmt.Errorf("repository %s: %w", dir, err)
	}
	st := g.Storer
	root, err := writeTree(st, files)
	if err != nil {
		return "", fmt.Errorf("repository %s: %w", dir, err)
	}
	refName := plumbing.NewBranchReferenceName(branch)
	sig := object.Signature{Name: "kvx", Email: "kvx@localhost", When: time.Now()}
	c := &object.Commit{Author: sig, Committer: sig, Message: message, TreeHash: root}
	if ref, err := st.Reference(refName); err == nil && !orphan {
		c.ParentHashes = []plumbing.Hash{ref.Hash()}
	}
	h, err := store(st, c)
	if err != nil {
		return "", err
	}
	if err := st.SetReference(plumbing.NewHashReference(refName, h)); err != nil {
		return "", err
	}
	if _, err := st.Reference(plumbing.HEAD); err != nil {
		st.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, refName))
	}
	return h.String(), nil
}

// DeleteBranch removes branch from the bare repository at dir.
func DeleteBranch(dir, branch string) error {
	g, err := git.PlainOpen(dir)
	if err != nil {
		return fmt.Errorf("repository %s: %w", dir, err)
	}
	return g.Storer.RemoveReference(plumbing.NewBranchReferenceName(branch))
}

// TagCommit points a lightweight tag at commit sha in the repository at dir.
func TagCommit(dir, tag, sha string) error {
	g, err := git.PlainOpen(dir)
	if err != nil {
		return fmt.Errorf("repository %s: %w", dir, err)
	}
	return g.Storer.SetReference(plumbing.NewHashReference(plumbing.NewTagReferenceName(tag), plumbing.NewHash(sha)))
}

type encodable interface {
	Encode(plumbing.EncodedObject) error
}

func store(st storer.EncodedObjectStorer, o encodable) (plumbing.Hash, error) {
	obj := st.NewEncodedObject()
	if err := o.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

// writeTree stores files as blobs and trees, and returns the root tree.
func writeTree(st storer.EncodedObjectStorer, files map[string][]byte) (plumbing.Hash, error) {
	sub := map[string]map[string][]byte{}
	var entries []object.TreeEntry
	for p, data := range files {
		if dir, rest, ok := strings.Cut(p, "/"); ok {
			if sub[dir] == nil {
				sub[dir] = map[string][]byte{}
			}
			sub[dir][rest] = data
			continue
		}
		h := plumbing.ComputeHash(plumbing.BlobObject, data)
		if st.HasEncodedObject(h) != nil { // not stored yet
			obj := st.NewEncodedObject()
			obj.SetType(plumbing.BlobObject)
			w, err := obj.Writer()
			if err != nil {
				return plumbing.ZeroHash, err
			}
			w.Write(data)
			w.Close()
			if _, err := st.SetEncodedObject(obj); err != nil {
				return plumbing.ZeroHash, err
			}
		}
		entries = append(entries, object.TreeEntry{Name: p, Mode: filemode.Regular, Hash: h})
	}
	for dir, fs := range sub {
		h, err := writeTree(st, fs)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = append(entries, object.TreeEntry{Name: dir, Mode: filemode.Dir, Hash: h})
	}
	// git orders a directory as if its name ended in "/".
	sortName := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(entries, func(i, j int) bool { return sortName(entries[i]) < sortName(entries[j]) })
	return store(st, &object.Tree{Entries: entries})
}
