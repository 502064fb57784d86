package server_test

import (
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// A single node's normal start and clean stop log no warning and no error,
// and Raft's fields read as values (not `map[]`).
func TestSingleNodeStartAndStopLogNoWarnings(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts server.Options
	}{
		{"dev", server.Options{Dev: true}},
		{"durable", server.Options{DataDir: t.TempDir(), HeartbeatTimeout: 100 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &servertest.Buffer{}
			tc.opts.NodeName = "quiet"
			tc.opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
			srv, c := startNode(t, tc.opts)
			waitLeader(t, srv)
			mustPut(t, c.KV(), "k", "v")
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
			got := logs.String()
			for _, bad := range []string{"level=WARN", "level=ERROR", "map["} {
				if strings.Contains(got, bad) {
					t.Errorf("log has %q:\n%s", bad, got)
				}
			}
			for _, want := range []string{
				`msg="entering leader state" component=raft leader="Node at ` + srv.RaftAddr() + ` [Leader]"`,
				`msg="server stopped" node=quiet`,
			} {
				if !strings.Contains(got, want) {
					t.Errorf("log has no %q:\n%s", want, got)
				}
			}
		})
	}
}

// At Info a server logs one line per failed request (method, path, status,
// duration) and nothing for the rest; at Debug, every request.
func TestRequestLogs(t *testing.T) {
	requests := []struct {
		method, path string
		body         string
		status       int
		failed       bool
	}{
		{"PUT", "/v1/kv/a", "x", 200, false},
		{"GET", "/v1/kv/a", "", 200, false},
		{"GET", "/v1/kv/missing", "", 404, false}, // no such key: an answer
		{"GET", "/v1/kv/a?index=abc", "", 400, true},
		{"POST", "/v1/kv/a", "x", 405, true},
		{"GET", "/v1/kv/a?dc=dc9", "", 500, true},
		{"GET", "/v1/no/such/endpoint", "", 404, true},
	}
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		t.Run(level.String(), func(t *testing.T) {
			logs := &servertest.Buffer{}
			srv := servertest.Start(t, func(o *server.Options) {
				o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
			})
			base := "http://" + srv.HTTPAddr()
			for _, r := range requests {
				if code, body, _ := rawDo(t, r.method, base+r.path, []byte(r.body)); code != r.status {
					t.Fatalf("%s %s = %d %q, want %d", r.method, r.path, code, body, r.status)
				}
			}
			line := regexp.MustCompile(`(?m)^.* level=(\w+) msg="(http request(?: failed)?)" method=(\w+) path=(\S+) status=(\d+) duration=\S+ remote=127\.0\.0\.1:\d+.*$`)
			var got []string
			for _, m := range line.FindAllStringSubmatch(logs.String(), -1) {
				got = append(got, strings.Join(m[1:6], " "))
			}
			var want []string
			for _, r := range requests {
				path, _, _ := strings.Cut(r.path, "?")
				switch {
				case r.failed && r.status >= 500:
					want = append(want, "WARN http request failed "+r.method+" "+path+" "+strconv.Itoa(r.status))
				case r.failed:
					want = append(want, "INFO http request failed "+r.method+" "+path+" "+strconv.Itoa(r.status))
				case level == slog.LevelDebug:
					want = append(want, "DEBUG http request "+r.method+" "+path+" "+strconv.Itoa(r.status))
				}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("request log lines:\n%s\nwant:\n%s\nwhole log:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), logs.String())
			}
			if !strings.Contains(logs.String(), `err="No path to datacenter"`) {
				t.Errorf("the failed request's line does not say why:\n%s", logs.String())
			}
		})
	}
}
