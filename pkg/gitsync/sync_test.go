package gitsync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
)

func TestSyncMapsExpandsAndIsIdempotent(t *testing.T) {
	e := newEnv(t)
	binary := "\x00\x01\xff\xfe binary \r\n\x00"
	sha := e.repo.commit("main", map[string]string{
		"app.json":          `{"db":{"port":5432,"host":"db1","ratio":1.50,"tls":true,"opt":null},"list":[1,"two"]}`,
		"svc/app.yaml":      "db:\n  port: 5432\n  weights: [0.5, 2]\nname: svc\n",
		"db.properties":     "# comment\nurl=jdbc:${host}/x\nhost = db2\nmulti = a \\\n  b\n",
		"logo.bin":          binary,
		"plain/config.conf": "  spaces kept  \n",
	})
	r := e.repoConfig(func(r *Repo) { r.Expand = true })
	res := e.mustSync(r, "main")
	want := map[string]string{
		"cfg/app/main/app.json/db/port":          "5432",
		"cfg/app/main/app.json/db/host":          "db1",
		"cfg/app/main/app.json/db/ratio":         "1.50",
		"cfg/app/main/app.json/db/tls":           "true",
		"cfg/app/main/app.json/db/opt":           "",
		"cfg/app/main/app.json/list/0":           "1",
		"cfg/app/main/app.json/list/1":           "two",
		"cfg/app/main/svc/app.yaml/db/port":      "5432",
		"cfg/app/main/svc/app.yaml/db/weights/0": "0.5",
		"cfg/app/main/svc/app.yaml/db/weights/1": "2",
		"cfg/app/main/svc/app.yaml/name":         "svc",
		"cfg/app/main/db.properties/url":         "jdbc:db2/x",
		"cfg/app/main/db.properties/host":        "db2",
		"cfg/app/main/db.properties/multi":       "a b",
		"cfg/app/main/logo.bin":                  binary,
		"cfg/app/main/plain/config.conf":         "  spaces kept  \n",
	}
	if got := e.dump("cfg/app/main/"); !maps.Equal(got, want) {
		t.Fatalf("keys:\n got %v\nwant %v\n%q", keysOf(got), keysOf(want), got)
	}
	if ref, _ := e.get("cfg/app/main.ref"); ref != sha {
		t.Fatalf("ref = %q, want %s", ref, sha)
	}
	if res.Puts != len(want) || res.Txns != 1 {
		t.Fatalf("first sync: %d puts in %d txns", res.Puts, res.Txns)
	}
	again := e.mustSync(r, "main")
	if again.Puts != 0 || again.Deletes != 0 || again.Txns != 0 || again.Unchanged != len(want) {
		t.Fatalf("second sync wrote: %+v", again)
	}
}

func TestMappingOptions(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Repo)
		branch string
		want   []string
		ref    string
	}{
		{"default", nil, "main", []string{"cfg/app/main/etc/app.yaml", "cfg/app/main/etc/x/y.txt", "cfg/app/main/README"}, "cfg/app/main.ref"},
		{"skip names", func(r *Repo) { r.SkipBranchName, r.SkipRepoName = true, true }, "main",
			[]string{"cfg/etc/app.yaml", "cfg/etc/x/y.txt", "cfg/README"}, "cfg/main.ref"},
		{"source root and strip ext", func(r *Repo) { r.SourceRoot, r.StripExt = "/etc/", true }, "main",
			[]string{"cfg/app/main/app", "cfg/app/main/x/y"}, "cfg/app/main.ref"},
		{"include exclude", func(r *Repo) { r.Include, r.Exclude = []string{"etc/**"}, []string{"*.txt"} }, "main",
			[]string{"cfg/app/main/etc/app.yaml"}, "cfg/app/main.ref"},
		{"branch with slashes", func(r *Repo) { r.Branches = []string{"release/2026/1"} }, "release/2026/1",
			[]string{"cfg/app/release/2026/1/etc/app.yaml", "cfg/app/release/2026/1/etc/x/y.txt", "cfg/app/release/2026/1/README"}, "cfg/app/release/2026/1.ref"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			sha := e.repo.commit(tt.branch, map[string]string{"etc/app.yaml": "a: 1\n", "etc/x/y.txt": "y", "README": "r"})
			r := e.repoConfig(tt.modify)
			e.mustSync(r, tt.branch)
			got := e.dump("cfg/")
			if ref := got[tt.ref]; ref != sha {
				t.Fatalf("ref %s = %q, want %s (keys %s)", tt.ref, ref, sha, keysOf(got))
			}
			delete(got, tt.ref)
			slices.Sort(tt.want)
			if !slices.Equal(tt.want, sortedStrings(got)) {
				t.Fatalf("keys %v, want %v", sortedStrings(got), tt.want)
			}
		})
	}
}

func sortedStrings(m map[string]string) []string {
	return strings.Fields(keysOf(m))
}

func TestDeletesAreExactNotGreedy(t *testing.T) {
	for _, expand := range []bool{false, true} {
		t.Run(fmt.Sprint("expand=", expand), func(t *testing.T) {
			e := newEnv(t)
			files := map[string]string{"app.yml": "a: 1\n", "app.yml-dev": "dev", "app.yml.bak": "b: 2\n", "other": "o"}
			e.repo.commit("main", files)
			r := e.repoConfig(func(r *Repo) { r.Expand = expand })
			e.mustSync(r, "main")
			delete(files, "app.yml")
			e.repo.commit("main", files)
			res := e.mustSync(r, "main")
			got := e.dump("cfg/app/main/")
			if _, ok := got["cfg/app/main/app.yml-dev"]; !ok {
				t.Fatalf("deleting app.yml took app.yml-dev with it: %v", keysOf(got))
			}
			if _, ok := got["cfg/app/main/app.yml.bak"]; !ok {
				t.Fatalf("deleting app.yml took app.yml.bak with it: %v", keysOf(got))
			}
			for k := range got {
				if k == "cfg/app/main/app.yml" || strings.HasPrefix(k, "cfg/app/main/app.yml/") {
					t.Fatalf("%s left after app.yml was deleted", k)
				}
			}
			if res.Deletes != 1 || len(got) != 3 {
				t.Fatalf("%d deletes, keys %v", res.Deletes, keysOf(got))
			}
		})
	}
}

func TestDriftCorrectionAndKeep(t *testing.T) {
	e := newEnv(t)
	e.repo.commit("main", map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"})
	r := e.repoConfig(func(r *Repo) { r.Keep = []string{"manual/**"} })
	e.mustSync(r, "main")
	e.put("cfg/app/main/a", "edited by hand")
	e.put("cfg/app/main/extra", "added by hand")
	e.put("cfg/app/main/manual/flag", "kept")
	if _, err := e.kv.Put(&consulapi.KVPair{Key: "cfg/app/main/b", Value: []byte("2"), Flags: 7}, nil); err != nil {
		t.Fatal(err)
	}
	res := e.mustSync(r, "main")
	got := e.dump("cfg/app/main/")
	want := map[string]string{"cfg/app/main/a": "1", "cfg/app/main/b": "2", "cfg/app/main/c": "3", "cfg/app/main/d": "4", "cfg/app/main/manual/flag": "kept"}
	if !maps.Equal(got, want) {
		t.Fatalf("after drift correction: %q", got)
	}
	p, _, _ := e.kv.Get("cfg/app/main/b", nil)
	if p.Flags != 0 {
		t.Fatalf("flags drift not corrected: %d", p.Flags)
	}
	if res.Puts != 2 || res.Deletes != 1 || res.Plan.Kept != 1 {
		t.Fatalf("plan: %d puts, %d deletes, %d kept", res.Puts, res.Deletes, res.Plan.Kept)
	}
}

func TestBadFileAppliesNothing(t *testing.T) {
	tests := []struct {
		file, content, want string
	}{
		{"conf/bad.yaml", "a: 1\nb:\n  c: [1, 2\n  d: 3\n", "conf/bad.yaml:4:3:"},
		{"conf/bad.json", "{\n  \"a\": 1,\n  \"b\": }\n", "conf/bad.json:3:8:"},
		{"conf/bad.properties", "a=1\nb=\\u12G4\n", "conf/bad.properties:2:3:"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			e := newEnv(t)
			first := e.repo.commit("main", map[string]string{"conf/good.yaml": "x: 1\n"})
			r := e.repoConfig(func(r *Repo) { r.Expand = true })
			e.mustSync(r, "main")
			before := e.dump("cfg/")
			e.repo.commit("main", map[string]string{"conf/good.yaml": "x: 2\n", tt.file: tt.content})
			res := e.sync(r, "main")
			if res.Err == nil || !strings.Contains(res.Err.Error(), tt.want) {
				t.Fatalf("error %v, want it to name %q", res.Err, tt.want)
			}
			var pe *ParseError
			if !errors.As(res.Err, &pe) || pe.Line == 0 || pe.Column == 0 {
				t.Fatalf("not a positioned ParseError: %#v", res.Err)
			}
			if after := e.dump("cfg/"); !maps.Equal(before, after) {
				t.Fatalf("a bad commit changed KV: %q -> %q", before, after)
			}
			if ref, _ := e.get("cfg/app/main.ref"); ref != first {
				t.Fatalf("ref moved to %s", ref)
			}
		})
	}
}

func TestDeleteGuardAndForce(t *testing.T) {
	e := newEnv(t)
	files := map[string]string{}
	for i := range 10 {
		files[fmt.Sprint("f", i)] = "v"
	}
	e.repo.commit("main", files)
	r := e.repoConfig(nil)
	e.mustSync(r, "main")
	e.repo.commit("main", map[string]string{"f0": "v", "f1": "v", "f2": "v"})
	res := e.sync(r, "main")
	if !errors.Is(res.Err, ErrRefused) || !strings.Contains(res.Err.Error(), "delete 7 of the 10") {
		t.Fatalf("guard: %v", res.Err)
	}
	if n := len(e.dump("cfg/app/main/")); n != 10 {
		t.Fatalf("refused sync deleted: %d keys left", n)
	}
	e.s.Force = true
	res = e.mustSync(r, "main")
	if n := len(e.dump("cfg/app/main/")); n != 3 || res.Deletes != 7 {
		t.Fatalf("forced sync: %d keys left, %d deletes", n, res.Deletes)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.repo.commit("main", map[string]string{"a": "1", "b": "2"})
	r := e.repoConfig(nil)
	e.mustSync(r, "main")
	e.repo.commit("main", map[string]string{"a": "changed", "b": "2", "c": "new"})
	e.put("cfg/app/main/stray", "x")
	before := e.dump("cfg/")
	e.s.DryRun = true
	res := e.mustSync(r, "main")
	if after := e.dump("cfg/"); !maps.Equal(before, after) {
		t.Fatal("dry run wrote")
	}
	var b strings.Builder
	res.Plan.Print(&b)
	for _, want := range []string{"put    cfg/app/main/a", "put    cfg/app/main/c", "delete cfg/app/main/stray", "2 puts, 1 deletes, 1 unchanged"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("plan misses %q:\n%s", want, b.String())
		}
	}
}

func TestForcePushSyncsToNewHead(t *testing.T) {
	e := newEnv(t)
	e.repo.commit("main", map[string]string{"a": "1", "b": "2", "c": "3"})
	r := e.repoConfig(nil)
	e.mustSync(r, "main")
	sha, err := CommitFiles(e.repo.dir, "main", map[string][]byte{"a": []byte("rewritten"), "b": []byte("2"), "c": []byte("3"), "d": []byte("4")}, "rewritten history", true)
	if err != nil {
		t.Fatal(err)
	}
	res := e.mustSync(r, "main")
	if res.Commit != sha {
		t.Fatalf("synced %s, want the force-pushed %s", res.Commit, sha)
	}
	if v, _ := e.get("cfg/app/main/a"); v != "rewritten" {
		t.Fatalf("a = %q", v)
	}
	if ref, _ := e.get("cfg/app/main.ref"); ref != sha {
		t.Fatalf("ref = %s", ref)
	}
}

func TestBranchDeletedUpstream(t *testing.T) {
	e := newEnv(t)
	e.repo.commit("main", map[string]string{"a": "1"})
	e.repo.commit("feature/x", map[string]string{"f1": "1", "f2": "2"})
	r := e.repoConfig(func(r *Repo) { r.Branches = []string{"main", "feature/x"} })
	e.mustSync(r, "feature/x")
	if err := DeleteBranch(e.repo.dir, "feature/x"); err != nil {
		t.Fatal(err)
	}
	res := e.mustSync(r, "feature/x")
	if !res.DeletedUpstream || res.Pruned {
		t.Fatalf("result %+v", res)
	}
	if n := len(e.dump("cfg/app/feature/x/")); n != 2 {
		t.Fatalf("deleted branch's keys: %d left, want them left", n)
	}
	r.PruneBranches = true
	res = e.mustSync(r, "feature/x")
	if !res.Pruned || len(e.dump("cfg/app/feature/x")) != 0 {
		t.Fatalf("prune left %v", e.dump("cfg/app/feature/x"))
	}
	if len(e.dump("cfg/app/main/")) != 1 {
		t.Fatal("prune touched main")
	}
	// A branch never synced and missing upstream is an error.
	r.Branches = []string{"main", "nope"}
	if res := e.sync(r, "nope"); res.Err == nil || !strings.Contains(res.Err.Error(), "no branch nope") {
		t.Fatalf("missing branch: %v", res.Err)
	}
}

func TestTagsSyncAsBranches(t *testing.T) {
	e := newEnv(t)
	sha := e.repo.commit("main", map[string]string{"a": "1"})
	if err := TagCommit(e.repo.dir, "v1.0", sha); err != nil {
		t.Fatal(err)
	}
	e.repo.commit("main", map[string]string{"a": "2"})
	r := e.repoConfig(func(r *Repo) { r.Tags = true })
	e.mustSync(r, "v1.0")
	if v, _ := e.get("cfg/app/v1.0/a"); v != "1" {
		t.Fatalf("tag key = %q", v)
	}
	if v, _ := e.get("cfg/app/main/a"); v != "2" {
		t.Fatalf("branch key = %q", v)
	}
}

func TestBatchesAndLargeValues(t *testing.T) {
	e := newEnv(t)
	files := map[string]string{}
	for i := range 300 {
		files[fmt.Sprintf("many/%03d", i)] = strings.Repeat("x", 100)
	}
	for i := range 4 {
		files[fmt.Sprint("mid", i)] = strings.Repeat(fmt.Sprint(i), 200<<10) // 200 KiB: one per transaction
	}
	e.repo.commit("main", files)
	r := e.repoConfig(func(r *Repo) { r.MaxDelete = "100%" })
	res := e.mustSync(r, "main")
	if res.Txns < 4 || res.Puts != 304 {
		t.Fatalf("%d puts in %d transactions", res.Puts, res.Txns)
	}
	if n := len(e.dump("cfg/app/main/")); n != 304 {
		t.Fatalf("%d keys", n)
	}

	// Over the limit: refused by default, naming the file; chunked on demand.
	big := strings.Repeat("0123456789abcdef", 40<<10) // 640 KiB
	files["big.bin"] = big
	e.repo.commit("main", files)
	res = e.sync(r, "main")
	if !errors.Is(res.Err, ErrRefused) || !strings.Contains(res.Err.Error(), "big.bin") {
		t.Fatalf("large refused: %v", res.Err)
	}
	r.Large = LargeChunk
	res = e.mustSync(r, "main")
	got := e.dump("cfg/app/main/big.bin/")
	if got["cfg/app/main/big.bin/checksum"] == "" || len(got) < 4 {
		t.Fatalf("chunked layout: %v", keysOf(got))
	}
	again := e.mustSync(r, "main")
	if again.Puts != 0 || again.Deletes != 0 {
		t.Fatalf("chunked value rewritten: %+v", again)
	}
	delete(files, "big.bin")
	e.repo.commit("main", files)
	e.mustSync(r, "main")
	if got := e.dump("cfg/app/main/big.bin"); len(got) != 0 {
		t.Fatalf("large file's keys left: %v", keysOf(got))
	}
}

// failingKV fails the Nth transaction, as a server lost mid-sync would.
type failingKV struct {
	KV
	n, failAt int
}

func (f *failingKV) Txn(ops consulapi.KVTxnOps, q *consulapi.QueryOptions) (bool, *consulapi.KVTxnResponse, *consulapi.QueryMeta, error) {
	f.n++
	if f.n == f.failAt {
		return false, nil, nil, errors.New("connection reset")
	}
	return f.KV.Txn(ops, q)
}

func TestInterruptedSyncIsCompletedByTheNext(t *testing.T) {
	e := newEnv(t)
	files := map[string]string{}
	for i := range 400 {
		files[fmt.Sprintf("k%03d", i)] = "v"
	}
	sha := e.repo.commit("main", files)
	r := e.repoConfig(nil)
	e.s.KV = &failingKV{KV: e.kv, failAt: 3}
	if res := e.sync(r, "main"); res.Err == nil || !strings.Contains(res.Err.Error(), "transaction 3 of 4") {
		t.Fatalf("interrupted sync: %v", res.Err)
	}
	if ref, _ := e.get("cfg/app/main.ref"); ref == sha {
		t.Fatal("ref advanced past a failed transaction")
	}
	if n := len(e.dump("cfg/app/main/")); n == 0 || n == 400 {
		t.Fatalf("%d keys after two of four transactions", n)
	}
	e.s.KV = e.kv
	res := e.mustSync(r, "main")
	if n := len(e.dump("cfg/app/main/")); n != 400 || res.Puts != 400-2*(MaxTxnOps-1) {
		t.Fatalf("completion: %d keys, %d puts", n, res.Puts)
	}
	if ref, _ := e.get("cfg/app/main.ref"); ref != sha {
		t.Fatalf("ref = %s", ref)
	}
}

func TestTwoWritersWriteOnce(t *testing.T) {
	for _, n := range []int{10, 400} { // one transaction, several
		t.Run(fmt.Sprint(n, " files"), func(t *testing.T) {
			e := newEnv(t)
			files := map[string]string{}
			for i := range n {
				files[fmt.Sprintf("k%03d", i)] = "v"
			}
			sha := e.repo.commit("main", files)
			r := e.repoConfig(nil)
			other := &Syncer{KV: e.kv, CacheDir: t.TempDir()}
			done := make(chan Result, 2)
			for _, s := range []*Syncer{e.s, other} {
				go func() { done <- s.Sync(context.Background(), r)[0] }()
			}
			a, b := <-done, <-done
			if a.Err != nil || b.Err != nil {
				t.Fatalf("errors: %v, %v", a.Err, b.Err)
			}
			pairs, _, err := e.kv.List("cfg/app/main/", nil)
			if err != nil || len(pairs) != n {
				t.Fatalf("%d keys, %v", len(pairs), err)
			}
			for _, p := range pairs {
				if p.CreateIndex != p.ModifyIndex {
					t.Fatalf("%s written twice (create %d, modify %d)", p.Key, p.CreateIndex, p.ModifyIndex)
				}
			}
			if a.Puts != 0 && b.Puts != 0 && a.Puts+b.Puts != n {
				// Both wrote: then between them each key once (one took
				// over the other's sync after a claim).
				t.Fatalf("puts %d + %d for %d keys", a.Puts, b.Puts, n)
			}
			if ref, _ := e.get("cfg/app/main.ref"); ref != sha {
				t.Fatalf("ref = %s", ref)
			}
		})
	}
}
