package gitsync

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/transport"
)

// KV is the part of Consul's KV API gitsync uses; *api.KV satisfies it.
type KV interface {
	transport.KV
	List(prefix string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error)
}

// Put is one key a sync writes.
type Put struct {
	Key   string
	Value []byte
	File  string // the repository path it comes from
	Large bool   // written in kvx's chunked layout under Key/
}

// Plan is what one sync of a branch changes: the minimal puts (changed
// values and flags only) and exact-key deletes that make the prefix hold
// what the commit holds.
type Plan struct {
	Repo, Branch, Prefix, RefKey string
	Head                         string // the commit synced to ("" when pruning a deleted branch)
	Puts                         []Put
	Deletes                      []string
	Unchanged                    int
	Existing                     int // keys under the prefix, ref and kept keys aside: the delete guard's base
	Kept                         int // keys left alone by keep

	ref *consulapi.KVPair // the ref key as read; nil when there was none
}

// RefValue is the commit the ref key held when the plan was made.
func (p *Plan) RefValue() string {
	if p.ref == nil {
		return ""
	}
	return string(p.ref.Value)
}

// Empty reports whether there is nothing to write, the ref included.
func (p *Plan) Empty() bool {
	return len(p.Puts) == 0 && len(p.Deletes) == 0 && (p.Head == "" || p.RefValue() == p.Head)
}

// makePlan compares desired with actual, the pairs under the prefix. The
// ref key and keys matching keep are never deleted; the keys under a large
// entry's folder belong to its chunked layout.
func makePlan(r *Repo, branch, head string, desired map[string]Entry, actual consulapi.KVPairs, ref *consulapi.KVPair) *Plan {
	p := &Plan{Repo: r.Name, Branch: branch, Prefix: r.Prefix(branch), RefKey: r.RefKey(branch), Head: head, ref: ref}
	var largeDirs []string
	for k, e := range desired {
		if e.Large {
			largeDirs = append(largeDirs, k+"/")
		}
	}
	sort.Strings(largeDirs)
	owner := func(key string) string {
		i := sort.SearchStrings(largeDirs, key)
		if i > 0 && strings.HasPrefix(key, largeDirs[i-1]) {
			return strings.TrimSuffix(largeDirs[i-1], "/")
		}
		return ""
	}
	largeSums := map[string]string{}
	seen := make(map[string]bool, len(actual))
	for _, kv := range actual {
		if kv.Key == p.RefKey || !strings.HasPrefix(kv.Key, p.Prefix) {
			continue
		}
		if anyGlob(r.Keep, strings.TrimPrefix(kv.Key, p.Prefix)) {
			p.Kept++
			continue
		}
		p.Existing++
		if o := owner(kv.Key); o != "" {
			if kv.Key == o+"/checksum" {
				largeSums[o] = strings.TrimSpace(string(kv.Value))
			}
			continue
		}
		e, ok := desired[kv.Key]
		switch {
		case !ok || e.Large:
			p.Deletes = append(p.Deletes, kv.Key)
		case bytes.Equal(e.Value, kv.Value) && kv.Flags == 0:
			seen[kv.Key] = true
			p.Unchanged++
		default:
			seen[kv.Key] = true
			p.Puts = append(p.Puts, Put{Key: kv.Key, Value: e.Value, File: e.File})
		}
	}
	for k, e := range desired {
		switch {
		case seen[k]:
		case e.Large && largeSums[k] == checksum.Of(e.Value):
			p.Unchanged++
		default:
			p.Puts = append(p.Puts, Put{Key: k, Value: e.Value, File: e.File, Large: e.Large})
		}
	}
	sort.Slice(p.Puts, func(i, j int) bool { return p.Puts[i].Key < p.Puts[j].Key })
	sort.Strings(p.Deletes)
	return p
}

// pruneAll is the plan of a branch deleted upstream with prune_branches:
// every key under its prefix, and its ref, deleted one by one.
func pruneAll(r *Repo, branch string, actual consulapi.KVPairs, ref *consulapi.KVPair) *Plan {
	p := makePlan(r, branch, "", nil, actual, ref)
	if ref != nil {
		p.Deletes = append(p.Deletes, p.RefKey)
	}
	return p
}

// Print writes the plan for people: one line per put and delete, then the
// counts.
func (p *Plan) Print(w io.Writer) {
	for _, put := range p.Puts {
		what := transport.Size(int64(len(put.Value)))
		if put.Large {
			what += ", chunked"
		}
		fmt.Fprintf(w, "put    %s (%s, from %s)\n", put.Key, what, put.File)
	}
	for _, d := range p.Deletes {
		fmt.Fprintf(w, "delete %s\n", d)
	}
	ref := "unchanged"
	if p.Head != "" && p.RefValue() != p.Head {
		ref = short(p.RefValue()) + " -> " + short(p.Head)
	}
	fmt.Fprintf(w, "%s %s -> %s: %d puts, %d deletes, %d unchanged, %d kept; %s %s\n",
		p.Repo, p.Branch, p.Prefix, len(p.Puts), len(p.Deletes), p.Unchanged, p.Kept, p.RefKey, ref)
}

func short(sha string) string {
	if sha == "" {
		return "(none)"
	}
	return sha[:min(len(sha), 12)]
}
