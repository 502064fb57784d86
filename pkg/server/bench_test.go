package server_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// BenchmarkBlockingFanout measures how long it takes, after one PUT, for N
// blocking queries on that key (each on its own connection) to all answer.
// It reports p50/p99/max of the per-watcher wake latency.
//
//	go test -run '^$' -bench BlockingFanout -benchtime 5x ./pkg/server
func BenchmarkBlockingFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			srv := servertest.Start(b)
			tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			url := "http://" + srv.HTTPAddr() + "/v1/kv/fanout/checksum"
			put := func(v string) uint64 {
				req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(v))
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				resp, err = hc.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
				return idx
			}
			var all []time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				idx := put(fmt.Sprint("v", i))
				var (
					wg      sync.WaitGroup
					started sync.WaitGroup
					mu      sync.Mutex
					woke    = make([]time.Time, 0, n)
				)
				for w := 0; w < n; w++ {
					wg.Add(1)
					started.Add(1)
					go func() {
						defer wg.Done()
						req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s?index=%d&wait=60s", url, idx), nil)
						started.Done()
						resp, err := hc.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						mu.Lock()
						woke = append(woke, time.Now())
						mu.Unlock()
					}()
				}
				started.Wait()
				// Every query must be blocking on the server before the write.
				servertest.Eventually(b, "every query blocking", func() bool {
					self, err := srv.Client.Agent().Self()
					return err == nil && self["Stats"]["raft"].(map[string]any)["blocking_queries"] == strconv.Itoa(n)
				})
				b.StartTimer()
				t0 := time.Now()
				put(fmt.Sprint("w", i))
				wg.Wait()
				b.StopTimer()
				if len(woke) != n {
					b.Fatalf("%d of %d watchers woke", len(woke), n)
				}
				for _, t := range woke {
					all = append(all, t.Sub(t0))
				}
			}
			slices.Sort(all)
			q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(1), "max-ms")
		})
	}
}
