package checks

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

func TestThresholds(t *testing.T) {
	const P, W, C = config.StatusPassing, config.StatusWarning, config.StatusCritical
	for _, tc := range []struct {
		name                  string
		sbp, fbw, fbc         int
		results, wantNotified string // one letter a probe / a notify: p, w, c
	}{
		{"no thresholds: every result counts", 0, 0, 0, "ppcpwc", "pcpwc"},
		{"first result counts at once, as Consul", 3, 0, 2, "p", "p"},
		{"success_before_passing", 3, 0, 0, "cpppp", "cp"},
		{"success_before_passing resets on failure", 2, 0, 0, "cpcpp", "cp"},
		{"failures_before_critical", 0, 0, 3, "pcccc", "pc"},
		{"failures_before_critical resets on success", 0, 0, 2, "pcpcc", "pc"},
		{"failures_before_warning", 0, 1, 3, "pccc", "pwc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			m := New(Options{Notify: func(s State) { got = append(got, s.Status[:1]) }})
			c := m.newCheck(config.Check{ID: "x", TCP: "h:1", Interval: time.Second,
				SuccessBeforePassing: tc.sbp, FailuresBeforeWarning: tc.fbw, FailuresBeforeCritical: tc.fbc}, State{})
			for _, r := range tc.results {
				status := map[rune]string{'p': P, 'w': W, 'c': C}[r]
				c.report(status, "out") // one output: only status changes notify
			}
			if strings.Join(got, "") != tc.wantNotified {
				t.Errorf("results %s notified %s, want %s", tc.results, strings.Join(got, ""), tc.wantNotified)
			}
		})
	}
}

func TestSteadyCheckNotifiesOnce(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprint(w, "steady")
	}))
	defer srv.Close()
	m, rec := start(t, config.Check{ID: "steady", HTTP: srv.URL, Interval: time.Millisecond})
	rec.waitStatus(t, "steady", config.StatusPassing)
	waitUntil(t, "20 probes served", func() bool { return served.Load() >= 20 })
	// Look while it keeps running: the start (critical) and the change to
	// passing, nothing for the probes since.
	if calls := rec.of("steady"); len(calls) != 2 || calls[0].Status != config.StatusCritical {
		t.Errorf("%d probes gave notifications %+v, want exactly the start and the change", served.Load(), calls)
	}
	if st, ok := m.Status("steady"); !ok || st.Status != config.StatusPassing {
		t.Errorf("Status = %+v, %v", st, ok)
	}
}

// countingListener accepts TCP connections and counts them.
// acceptedFrom holds the remote address of every connection a counting
// listener accepted.
var acceptedFrom sync.Map

func countingListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			acceptedFrom.Store(c.RemoteAddr().String(), true)
			n.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), &n
}

func TestReplace(t *testing.T) {
	addrA, hitsA := countingListener(t)
	addrC, hitsC := countingListener(t)
	a := config.Check{ID: "a", TCP: addrA, Interval: time.Millisecond, File: "a.json"}
	b := config.Check{ID: "b", TTL: time.Hour, File: "b.json"}
	m, rec := start(t, a, b)
	rec.waitStatus(t, "a", config.StatusPassing)
	if _, err := m.UpdateTTL("b", config.StatusPassing, "fed"); err != nil {
		t.Fatal(err)
	}
	before := len(rec.of("b"))

	// b unchanged (moved to another file), a removed, c added.
	b2 := b
	b2.File = "other.json"
	c := config.Check{ID: "c", TCP: addrC, Interval: time.Millisecond}
	if err := m.Replace([]config.Check{b2, c}); err != nil {
		t.Fatal(err)
	}
	// A probe of a made before Replace returned may still sit in a's
	// accept queue: dial a marker connection and, the queue being FIFO,
	// once the listener has accepted it every earlier one is counted.
	marker, err := net.Dial("tcp", addrA)
	if err != nil {
		t.Fatal(err)
	}
	markerAddr := marker.LocalAddr().String()
	defer marker.Close()
	waitUntil(t, "the marker accepted", func() bool { _, ok := acceptedFrom.Load(markerAddr); return ok })
	stoppedAt := hitsA.Load() // the marker included
	rec.waitStatus(t, "c", config.StatusPassing)
	seenC := hitsC.Load()
	waitUntil(t, "c probed 10 more times", func() bool { return hitsC.Load() >= seenC+10 })
	if n := hitsA.Load(); n != stoppedAt {
		t.Errorf("removed check a probed %d more times after Replace returned", n-stoppedAt)
	}
	if _, ok := m.Status("a"); ok {
		t.Error("removed check a still has a status")
	}
	if st, _ := m.Status("b"); st.Status != config.StatusPassing || st.Output != "fed" {
		t.Errorf("unchanged check b = %+v, want its state kept", st)
	}
	if n := len(rec.of("b")); n != before {
		t.Errorf("unchanged check b notified %d more times, want it left running untouched", n-before)
	}

	// b changed: restarts, keeping its status, output and since.
	bBefore, _ := m.Status("b")
	b3 := b2
	b3.Notes = "now with notes"
	if err := m.Replace([]config.Check{b3, c}); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.Status("b"); st != bBefore {
		t.Errorf("changed check b = %+v, want it restarted from its state %+v", st, bBefore)
	}

	var ids []string
	for _, s := range m.Statuses() {
		ids = append(ids, s.CheckID)
	}
	if strings.Join(ids, ",") != "b,c" {
		t.Errorf("Statuses ids = %v, want [b c]", ids)
	}

	for _, bad := range [][]config.Check{
		{c, c},
		{{ID: "", TTL: time.Second}},
		{{ID: "nokind", Interval: time.Second}},
	} {
		if err := m.Replace(bad); err == nil {
			t.Errorf("Replace(%+v) took it", bad)
		}
	}
	if len(m.Statuses()) != 2 {
		t.Errorf("a refused Replace changed the set: %+v", m.Statuses())
	}
}

func TestReplaceBeforeAndAfterRun(t *testing.T) {
	addr, hits := countingListener(t)
	m := New(Options{MinInterval: time.Millisecond})
	if err := m.Replace([]config.Check{{ID: "a", TCP: addr, Interval: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	if st, ok := m.Status("a"); !ok || st.Status != config.StatusCritical {
		t.Errorf("before Run: %+v %v, want the initial status", st, ok)
	}
	if hits.Load() != 0 {
		t.Error("a check ran before Run")
	}
	stop := runManager(t, m)
	waitUntil(t, "a probed", func() bool { return hits.Load() > 0 })
	stop()
	after := hits.Load()
	// After Run, Replace still works and starts nothing.
	if err := m.Replace([]config.Check{{ID: "b", TTL: time.Second}}); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != after {
		t.Error("a check ran after Run returned")
	}
}

func TestRunCancelKillsHungScript(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	m := New(Options{MinInterval: time.Millisecond})
	err := m.Replace([]config.Check{{ID: "hang", Interval: time.Millisecond, Timeout: time.Hour,
		Args: []string{"sh", "-c", `sleep 300 & echo $! > "$1"; wait`, "sh", pidFile}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runManager(t, m)
	var pid string
	waitUntil(t, "the script started", func() bool {
		b, err := os.ReadFile(pidFile)
		pid = strings.TrimSpace(string(b))
		return err == nil && pid != ""
	})
	stop() // fails the test if the hung script keeps Run from returning
	waitUntil(t, "the script's child "+pid+" killed", func() bool { return !processAlive(pid) })
}

// grpcHealthServer serves grpc.health.v1.Health/Check over unencrypted
// HTTP/2, answering status for every request and recording the service
// asked about.
func grpcHealthServer(t *testing.T, status *atomic.Uint32, asked *atomic.Value) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/grpc.health.v1.Health/Check" || r.ProtoMajor != 2 || r.Header.Get("Content-Type") != "application/grpc" {
			http.Error(w, "not a gRPC health call", http.StatusBadRequest)
			return
		}
		req, _ := io.ReadAll(r.Body)
		if len(req) >= 7 {
			asked.Store(string(req[7:])) // frame header, field tag, length (short names)
		}
		msg := binary.AppendUvarint([]byte{0x08}, uint64(status.Load()))
		frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write(append(frame, msg...))
		w.Header().Set("Grpc-Status", "0")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestGRPCCheck(t *testing.T) {
	var status atomic.Uint32
	var asked atomic.Value
	status.Store(1)
	addr := grpcHealthServer(t, &status, &asked)
	target := addr + "/billing"
	_, rec := start(t, config.Check{ID: "grpc", GRPC: target, Interval: tick})
	s := rec.waitStatus(t, "grpc", config.StatusPassing)
	if want := "gRPC check " + target + ": success"; s.Output != want {
		t.Errorf("output = %q, want %q", s.Output, want)
	}
	if got, _ := asked.Load().(string); got != "billing" {
		t.Errorf("server was asked about %q, want billing", got)
	}
	status.Store(2)
	s = rec.waitStatus(t, "grpc", config.StatusCritical)
	if want := "gRPC " + target + " serving status: NOT_SERVING"; s.Output != want {
		t.Errorf("output = %q, want %q", s.Output, want)
	}
}
