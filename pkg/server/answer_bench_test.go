package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// discardWriter is a ResponseWriter that keeps nothing: the benchmarks
// below measure what the server does per answer, not a recorder's copy.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }

func benchServer(b *testing.B) (*Server, http.Handler) {
	s, err := New(Options{Dev: true, NodeName: "bench", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.WaitForLeader(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s, s.httpSrv.Handler
}

// BenchmarkAnswer is the server's work for one answer of a fleet's
// delivery, woken or not (the blocking wait itself excluded): the kvx out
// path (a raw read of a 30 kB file with the node's four keys, gzip
// accepted) and the Consul-client path (the checksum, then the data as
// JSON). Allocations per answer with -benchmem.
//
//	go test -run '^$' -bench Answer -benchmem ./pkg/server
func BenchmarkAnswer(b *testing.B) {
	s, h := benchServer(b)
	content := make([]byte, 0, 30<<10)
	for i := 0; len(content) < 30000; i++ {
		content = fmt.Appendf(content, "10.0.%d.%d node-%d.example\n", i/250%250, i%250, i)
	}
	for _, op := range []struct{ key, value string }{
		{"kvx/f/data", string(content)}, {"kvx/f/checksum", strings.Repeat("a", 64)},
		{"kvx/f/nodes/web-1", `{"node":"web-1","checksum":"aaaa","result":"delivered","time":"2026-11-23T00:00:00Z"}`},
	} {
		if _, err := s.apply(encodeKV(&state.Op{Verb: state.VerbSet, Key: op.key, Value: []byte(op.value)})); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, url string
		header    http.Header
	}{
		{"kvx-out", "/v1/kv/kvx/f/data?raw", http.Header{"Accept-Encoding": {"gzip"},
			"X-Kvx-Read": {`["kvx/f/checksum","kvx/f/stop","kvx/locks/web-1/x","kvx/f/nodes/web-1"]`}}},
		{"consul-checksum", "/v1/kv/kvx/f/checksum", http.Header{"Accept-Encoding": {"gzip"}}},
		{"consul-data", "/v1/kv/kvx/f/data", http.Header{"Accept-Encoding": {"gzip"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			req.Header = tc.header
			req.RemoteAddr = "127.0.0.1:1234"
			w := &discardWriter{}
			b.ReportAllocs()
			for b.Loop() {
				w.h, w.code, w.n = http.Header{}, 0, 0
				h.ServeHTTP(w, req)
			}
			if w.code != http.StatusOK || w.n == 0 {
				b.Fatalf("answer %d, %d bytes", w.code, w.n)
			}
		})
	}
}

// BenchmarkAckBatch is the leader's work for one acknowledgement of a
// fleet's push: a thousand nodes' acknowledgements written as
// applyAcks writes a batch (one Raft entry per ackMaxBatch).
func BenchmarkAckBatch(b *testing.B) {
	s, _ := benchServer(b)
	const nodes = 1000
	sets := make([]ackSet, nodes)
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		round++
		for i := range sets {
			sets[i] = ackSet{Key: fmt.Sprintf("kvx/f/nodes/web-%04d", i),
				Value: fmt.Appendf(nil, `{"node":"web-%04d","checksum":"%064d","result":"delivered","file":"/etc/hosts","time":"2026-11-23T00:00:00Z"}`, i, round)}
		}
		if err := s.applyAcks(sets); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nodes)/1000, "µs/ack")
}
