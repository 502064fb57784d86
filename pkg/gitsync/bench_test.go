package gitsync

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// repo10k is a repository of 10,000 files (100 directories of 100 files of
// about 120 bytes; a tenth of them YAML).
func repo10k(b *testing.B) (*testRepo, map[string][]byte) {
	r := newTestRepo(b)
	files := make(map[string][]byte, 10000)
	for d := range 100 {
		for f := range 100 {
			name := fmt.Sprintf("svc%02d/conf%02d.txt", d, f)
			if f%10 == 0 {
				name = fmt.Sprintf("svc%02d/conf%02d.yaml", d, f)
			}
			files[name] = fmt.Appendf(nil, "name: svc%02d-%02d\nport: %d\nhosts: db%d.internal\n%s\n", d, f, 1000+f, d, bytes.Repeat([]byte("#"), 60))
		}
	}
	if _, err := CommitFiles(r.dir, "main", files, "10k files", false); err != nil {
		b.Fatal(err)
	}
	return r, files
}

// BenchmarkFirstSync10k: fetch a 10,000-file repository into an empty
// cache and write it into an empty prefix. Reports ms per sync and the heap
// the syncer keeps for the repository afterwards.
func BenchmarkFirstSync10k(b *testing.B) {
	e := newEnv(b)
	r, _ := repo10k(b)
	e.repo = r
	var retained uint64
	for i := 0; b.Loop(); i++ {
		cfg := e.repoConfig(func(r *Repo) { r.Mountpoint = fmt.Sprint("bench", i) })
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := &Syncer{KV: e.kv, CacheDir: b.TempDir()}
		res := s.Sync(context.Background(), cfg)[0]
		if res.Err != nil || res.Puts != 10000 {
			b.Fatalf("%d puts, %v", res.Puts, res.Err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		retained = max(retained, after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))
		runtime.KeepAlive(s)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/sync")
	b.ReportMetric(float64(retained)/(1<<20), "MiB-retained")
}

// BenchmarkWebhookToKV: git2kv serve on the 10,000-file repository; 20
// times, commit one changed file, send a signed GitHub push webhook, and
// time until a blocking query on the key answers with the new value.
func BenchmarkWebhookToKV(b *testing.B) {
	e := newEnv(b)
	r, files := repo10k(b)
	e.repo = r
	svc, hs := startService(b, e, e.s, "s3cret", nil)
	key := "cfg/app/main/svc42/conf07.txt"
	deadline := time.Now().Add(time.Minute)
	for len(svc.Status()) == 0 || svc.Status()[0].Error != "" {
		if time.Now().After(deadline) {
			b.Fatalf("first sync: %+v", svc.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	body := []byte(`{"ref":"refs/heads/main"}`)
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		for round := range 20 {
			p, meta, err := e.kv.Get(key, nil)
			if err != nil || p == nil {
				b.Fatal(err)
			}
			want := fmt.Sprintf("changed %d %d", i, round)
			files["svc42/conf07.txt"] = []byte(want)
			if _, err := CommitFiles(r.dir, "main", files, "one change", false); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			req, _ := http.NewRequest(http.MethodPost, hs.URL+"/webhook", bytes.NewReader(body))
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-Hub-Signature-256", SignGitHub([]byte("s3cret"), body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusAccepted {
				b.Fatalf("webhook: %v", err)
			}
			resp.Body.Close()
			index := meta.LastIndex
			for {
				p, meta, err = e.kv.Get(key, &consulapi.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second})
				if err != nil {
					b.Fatal(err)
				}
				if p != nil && string(p.Value) == want {
					break
				}
				index = meta.LastIndex
			}
			lat = append(lat, time.Since(start))
		}
	}
	slices.Sort(lat)
	pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
