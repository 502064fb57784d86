package checks

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

const tick = 10 * time.Millisecond

func TestHTTPCheck(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	type seen struct{ method, probe, ua, body string }
	got := make(chan seen, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case got <- seen{r.Method, r.Header.Get("X-Probe"), r.Header.Get("User-Agent"), string(b)}:
		default:
		}
		w.WriteHeader(int(code.Load()))
		fmt.Fprint(w, "body-", code.Load())
	}))
	defer srv.Close()
	url := srv.URL + "/health"
	_, rec := start(t, config.Check{ID: "web", HTTP: url, Method: "PUT", Body: "ping",
		Header: map[string][]string{"X-Probe": {"kvx"}}, Interval: tick})

	s := rec.waitStatus(t, "web", config.StatusPassing)
	if want := "HTTP PUT " + url + ": 200 OK Output: body-200"; s.Output != want {
		t.Errorf("output = %q, want %q", s.Output, want)
	}
	if r := <-got; r != (seen{"PUT", "kvx", "Consul Health Check", "ping"}) {
		t.Errorf("request = %+v", r)
	}
	code.Store(429)
	s = rec.waitStatus(t, "web", config.StatusWarning)
	if !strings.HasSuffix(s.Output, ": 429 Too Many Requests Output: body-429") {
		t.Errorf("429 output = %q", s.Output)
	}
	code.Store(503)
	rec.waitStatus(t, "web", config.StatusCritical)
	code.Store(204)
	rec.waitStatus(t, "web", config.StatusPassing)

	srv.Close()
	s = rec.waitStatus(t, "web", config.StatusCritical)
	if !strings.Contains(s.Output, "connection refused") {
		t.Errorf("down target output = %q, want the dial error", s.Output)
	}
}

func TestHTTPCheckTLSSkipVerify(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	_, rec := start(t,
		config.Check{ID: "skip", HTTP: srv.URL, TLSSkipVerify: true, Interval: tick, Status: config.StatusWarning},
		config.Check{ID: "verify", HTTP: srv.URL, Interval: tick, Status: config.StatusWarning})
	rec.waitStatus(t, "skip", config.StatusPassing)
	s := rec.waitStatus(t, "verify", config.StatusCritical)
	if !strings.Contains(s.Output, "certificate") {
		t.Errorf("unverified TLS output = %q, want a certificate error", s.Output)
	}
}

func TestHTTPCheckOutputCapped(t *testing.T) {
	big := strings.Repeat("a", 10000) + "THE-END"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, big) }))
	defer srv.Close()
	_, rec := start(t, config.Check{ID: "big", HTTP: srv.URL, Interval: tick})
	s := rec.waitStatus(t, "big", config.StatusPassing)
	if len(s.Output) > DefaultOutputMaxSize || !strings.HasSuffix(s.Output, "THE-END") || !strings.HasPrefix(s.Output, "HTTP GET ") {
		t.Errorf("output of %d bytes, starts %.30q, ends %q: want at most %d, Consul's prefix and the body's tail",
			len(s.Output), s.Output, s.Output[max(len(s.Output)-10, 0):], DefaultOutputMaxSize)
	}
}

func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	_, rec := start(t, config.Check{ID: "tcp", TCP: addr, Interval: tick})
	s := rec.waitStatus(t, "tcp", config.StatusPassing)
	if want := "TCP connect " + addr + ": Success"; s.Output != want {
		t.Errorf("output = %q, want %q", s.Output, want)
	}
	ln.Close()
	s = rec.waitStatus(t, "tcp", config.StatusCritical)
	if !strings.Contains(s.Output, "dial tcp "+addr) {
		t.Errorf("output = %q, want the dial error", s.Output)
	}
}

func TestScriptCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	codeFile := filepath.Join(dir, "code")
	setCode := func(c int) {
		if err := os.WriteFile(codeFile, []byte(strconv.Itoa(c)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setCode(0)
	script := `echo "to stdout $(cat "$1")"; echo "to stderr" >&2; exit "$(cat "$1")"`
	_, rec := start(t, config.Check{ID: "sh", Args: []string{"sh", "-c", script, "sh", codeFile}, Interval: tick})
	s := rec.waitStatus(t, "sh", config.StatusPassing)
	if s.Output != "to stdout 0\nto stderr\n" {
		t.Errorf("output = %q, want stdout and stderr together", s.Output)
	}
	setCode(1)
	s = rec.waitStatus(t, "sh", config.StatusWarning)
	if s.Output != "to stdout 1\nto stderr\n" {
		t.Errorf("output = %q", s.Output)
	}
	setCode(2)
	rec.waitStatus(t, "sh", config.StatusCritical)
	setCode(0)
	rec.waitStatus(t, "sh", config.StatusPassing)
}

func TestScriptCheckOutputCapped(t *testing.T) {
	_, rec := start(t, config.Check{ID: "loud", Interval: tick,
		Args: []string{"sh", "-c", `i=0; while [ $i -lt 1000 ]; do echo "line $i of noise"; i=$((i+1)); done; echo LAST`}})
	s := rec.waitStatus(t, "loud", config.StatusPassing)
	if len(s.Output) > DefaultOutputMaxSize || !strings.HasPrefix(s.Output, "Captured ") || !strings.HasSuffix(s.Output, "LAST\n") {
		t.Errorf("output of %d bytes starting %.40q: want at most %d, marked as captured, ending with the last line",
			len(s.Output), s.Output, DefaultOutputMaxSize)
	}
}

func TestScriptCheckTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The script starts a child that would outlive it, records its pid,
	// then hangs.
	script := `sleep 300 & echo $! > "$1"; echo started; sleep 300`
	_, rec := start(t, config.Check{ID: "hang", Args: []string{"sh", "-c", script, "sh", pidFile},
		Interval: tick, Timeout: 300 * time.Millisecond, Status: config.StatusPassing})
	s := rec.waitStatus(t, "hang", config.StatusCritical)
	if want := "Timed out (300ms) running check\n\nstarted\n"; s.Output != want {
		t.Errorf("output = %q, want %q", s.Output, want)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	waitUntil(t, "the script's child "+pid+" killed", func() bool { return !processAlive(pid) })
}

// processAlive says whether pid runs (a zombie waiting to be reaped does not).
func processAlive(pid string) bool {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func TestTTLCheck(t *testing.T) {
	m, rec := start(t,
		config.Check{ID: "ttl", TTL: 200 * time.Millisecond},
		config.Check{ID: "tcp", TCP: "127.0.0.1:1", Interval: time.Hour})
	if s := rec.waitStatus(t, "ttl", config.StatusCritical); s.Output != "" {
		t.Errorf("initial state = %+v, want critical with no output", s)
	}
	out, err := m.UpdateTTL("ttl", config.StatusPassing, "all good")
	if err != nil || out != "all good" {
		t.Fatalf("UpdateTTL = %q, %v", out, err)
	}
	st, _ := m.Status("ttl")
	if st.Status != config.StatusPassing || st.Output != "all good" || st.Since.IsZero() {
		t.Errorf("after update: %+v", st)
	}
	if _, err := m.UpdateTTL("ttl", config.StatusPassing, "still good"); err != nil {
		t.Fatal(err)
	}
	if st2, _ := m.Status("ttl"); st2.Output != "still good" || !st2.Since.Equal(st.Since) {
		t.Errorf("an output change moved Since: %+v, was %+v", st2, st)
	}
	s := rec.waitFor(t, "ttl", "expiry", func(s State) bool { return strings.HasPrefix(s.Output, "TTL expired") })
	if s.Status != config.StatusCritical || s.Output != "TTL expired (last output before timeout follows): still good" {
		t.Errorf("expired state = %+v", s)
	}

	long := strings.Repeat("x", 5000)
	out, _ = m.UpdateTTL("ttl", config.StatusWarning, long)
	if len(out) > DefaultOutputMaxSize || !strings.HasSuffix(out, " ... (captured 4062 of 5000 bytes)") {
		t.Errorf("long output capped to %d bytes ending %q", len(out), out[len(out)-40:])
	}

	if _, err := m.UpdateTTL("tcp", config.StatusPassing, ""); err == nil || !strings.Contains(err.Error(), ErrNotTTL.Error()) {
		t.Errorf("UpdateTTL on a TCP check: %v", err)
	}
	if _, err := m.UpdateTTL("nope", config.StatusPassing, ""); err == nil || !strings.Contains(err.Error(), ErrUnknownCheck.Error()) {
		t.Errorf("UpdateTTL on an unknown check: %v", err)
	}
	if _, err := m.UpdateTTL("ttl", "ok", ""); err == nil {
		t.Error("UpdateTTL took status \"ok\"")
	}
}
