package consulwatch_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/consulwatch"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// A Consul agent's watch config with an http handler: the result is POSTed
// with X-Consul-Index; a failing endpoint is retried.
func TestAgentConfigHTTPHandler(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv.Client, "cfg/a", "1")
	var mu sync.Mutex
	var got []string
	calls := 0
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if r.Method != "PUT" || r.Header.Get("X-Consul-Index") == "" || r.Header.Get("X-Foo") != "bar" {
			t.Errorf("request %s %v", r.Method, r.Header)
		}
		got = append(got, string(b))
	}))
	defer hs.Close()
	var entry map[string]any
	if err := json.Unmarshal([]byte(`{"type":"key","key":"cfg/a","handler_type":"http",
		"http_handler_config":{"path":"`+hs.URL+`","method":"PUT","header":{"x-foo":["bar"]},"timeout":"5s"}}`), &entry); err != nil {
		t.Fatal(err)
	}
	cfg, err := consulwatch.FromAgentConfig(entry, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinBackoff = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consulwatch.Run(ctx, srv.Client, cfg) }()
	servertest.Eventually(t, "the http handler to succeed", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"type":"key","key":"a"}`,
		`{"type":"key","key":"a","handler_type":"http"}`,
		`{"type":"key","key":"a","args":["x"],"handler":"y"}`,
		`{"type":"key","key":"a","handler_type":"carrier-pigeon","args":["x"]}`,
		`{"type":"key","args":["x"]}`,
	} {
		var e map[string]any
		_ = json.Unmarshal([]byte(bad), &e)
		if _, err := consulwatch.FromAgentConfig(e, io.Discard, io.Discard); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	var e map[string]any
	_ = json.Unmarshal([]byte(`{"type":"event","name":"deploy","args":["/bin/true"]}`), &e)
	if cfg, err := consulwatch.FromAgentConfig(e, io.Discard, io.Discard); err != nil || cfg.Params["name"] != "deploy" {
		t.Fatalf("script entry: %+v, %v", cfg, err)
	}
}
