package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// BenchmarkChangeToFile: a long-running render of one template; each
// iteration writes the key and waits for the new file. Reports p50/p99 of
// change -> file written.
func BenchmarkChangeToFile(b *testing.B) {
	srv := servertest.Start(b)
	put(b, srv.Client, "bench/v", "0")
	dest := filepath.Join(b.TempDir(), "out")
	tmpl, err := NewTemplate(TemplateOptions{Name: "bench", Text: `v={{ key "bench/v" }}`})
	if err != nil {
		b.Fatal(err)
	}
	written := make(chan struct{}, 1)
	r := NewRunner(sourceOf(srv.Client), []*Target{{Template: tmpl, Destination: dest}}, Options{OnPass: func(_ bool, w []string) {
		if len(w) > 0 {
			select {
			case written <- struct{}{}:
			default:
			}
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-written
	var lat []time.Duration
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		start := time.Now()
		put(b, srv.Client, "bench/v", strconv.Itoa(i))
		for {
			<-written
			if got, _ := os.ReadFile(dest); string(got) == "v="+strconv.Itoa(i) {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	cancel()
	<-done
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkPass500Templates: 500 templates over 50 keys, rendered once
// with the default pool of 32, into files (each fsynced and renamed) or,
// dry, into nothing. Reports the time to a full render of all 500, the
// queries in flight at most (connections held), and the heap after it.
func BenchmarkPass500Templates(b *testing.B) {
	b.Run("files", func(b *testing.B) { benchPass500(b, false) })
	b.Run("dry", func(b *testing.B) { benchPass500(b, true) })
}

func benchPass500(b *testing.B, dry bool) {
	srv := servertest.Start(b)
	for k := range 50 {
		put(b, srv.Client, fmt.Sprintf("bench/k%02d", k), fmt.Sprintf("value %d", k))
	}
	dir := b.TempDir()
	var targets []*Target
	for i := range 500 {
		tmpl, err := NewTemplate(TemplateOptions{Name: fmt.Sprintf("t%03d", i), Text: fmt.Sprintf(`a={{ key "bench/k%02d" }} b={{ keyOrDefault "bench/k%02d" "x" }}`, i%50, (i+7)%50)})
		if err != nil {
			b.Fatal(err)
		}
		targets = append(targets, &Target{Template: tmpl, Destination: filepath.Join(dir, fmt.Sprintf("t%03d", i))})
	}
	var peak int64
	var deps int
	b.ResetTimer()
	for range b.N {
		for _, t := range targets {
			os.Remove(t.Destination)
		}
		r := NewRunner(sourceOf(srv.Client), targets, Options{Once: true, Dry: dry})
		if err := r.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		st := r.Stats()
		peak, deps = max(peak, st.PeakInFlight), st.Dependencies
	}
	b.StopTimer()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(deps), "deps")
	b.ReportMetric(float64(peak), "peak-in-flight")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
}
