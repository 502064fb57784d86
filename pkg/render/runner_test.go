package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

func sourceOf(c *consulapi.Client) Source {
	return Source{KV: c.KV(), Health: c.Health(), Catalog: c.Catalog()}
}

func put(t testing.TB, c *consulapi.Client, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if _, err := c.KV().Put(&consulapi.KVPair{Key: kv[i], Value: []byte(kv[i+1])}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func target(t *testing.T, name, text, dest string) *Target {
	t.Helper()
	tmpl, err := NewTemplate(TemplateOptions{Name: name, Text: text})
	if err != nil {
		t.Fatal(err)
	}
	return &Target{Template: tmpl, Destination: dest}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// A long-running render writes once every dependency has arrived, and again
// on each change; key() waits for its key to exist.
func TestRunnerRendersAndFollowsChanges(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv.Client, "app/name", "web", "app/conf/a", "1", "app/conf/b", "2")
	dest := filepath.Join(t.TempDir(), "sub", "out.conf")
	tg := target(t, "app.ctmpl", `{{ key "app/name" }} port={{ key "app/port" }}{{ range tree "app/conf" }} {{ .Key }}={{ .Value }}{{ end }}`, dest)
	written := make(chan []string, 16)
	r := NewRunner(sourceOf(srv.Client), []*Target{tg}, Options{OnPass: func(_ bool, w []string) {
		if len(w) > 0 {
			written <- w
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	servertest.Eventually(t, "the watcher to know its dependencies", func() bool { return r.Stats().Dependencies == 3 })
	if got := readFile(t, dest); !strings.HasPrefix(got, "<") {
		t.Fatalf("rendered before app/port existed: %q", got)
	}
	put(t, srv.Client, "app/port", "8080")
	<-written
	if got, want := readFile(t, dest), "web port=8080 a=1 b=2"; got != want {
		t.Fatalf("rendered %q, want %q", got, want)
	}
	put(t, srv.Client, "app/conf/c", "3")
	<-written
	if got, want := readFile(t, dest), "web port=8080 a=1 b=2 c=3"; got != want {
		t.Fatalf("after a change: %q, want %q", got, want)
	}
}

// -once with a key that never appears fails after the timeout, naming the
// key and the template.
func TestOnceMissingKeyFails(t *testing.T) {
	srv := servertest.Start(t)
	dest := filepath.Join(t.TempDir(), "out")
	tg := target(t, "needs.ctmpl", `{{ key "nope/missing" }}{{ keyOrDefault "has/default" "d" }}`, dest)
	r := NewRunner(sourceOf(srv.Client), []*Target{tg}, Options{Once: true, OnceTimeout: 300 * time.Millisecond})
	err := r.Run(context.Background())
	var me *MissingError
	if !errors.As(err, &me) {
		t.Fatalf("Run = %v, want a MissingError", err)
	}
	if !strings.Contains(err.Error(), "needs.ctmpl needs kv.block(nope/missing)") || strings.Contains(err.Error(), "has/default") {
		t.Fatalf("error %q does not list exactly the missing key", err)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("destination written despite missing data: %v", err)
	}
}

// A failing check keeps the old file; commands shared by templates run
// once per pass.
func TestCheckAndCommands(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv.Client, "v", "good")
	dir := t.TempDir()
	log := filepath.Join(dir, "ran")
	cmd := "echo ran >> " + log
	a := target(t, "a", `{{ key "v" }}`, filepath.Join(dir, "a"))
	b := target(t, "b", `{{ key "v" }}!`, filepath.Join(dir, "b"))
	a.Command, b.Command = cmd, cmd
	a.Check = `grep -qv bad {{.Path}}`
	run := func() error {
		return NewRunner(sourceOf(srv.Client), []*Target{a, b}, Options{Once: true}).Run(context.Background())
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, log); got != "ran\n" {
		t.Fatalf("shared command ran %q, want once", got)
	}
	put(t, srv.Client, "v", "bad")
	err := run()
	if !errors.Is(err, ErrCheckFailed) {
		t.Fatalf("Run = %v, want a check failure", err)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "good" {
		t.Fatalf("check failed but a holds %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "b")); got != "bad!" {
		t.Fatalf("b (no check) holds %q", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("staged file %s left behind", e.Name())
		}
	}
}

// safeTree refuses to render an empty prefix that ls renders empty.
func TestSafeTreeRefusesEmpty(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	plain := target(t, "plain", `[{{ range ls "empty" }}{{ .Key }}{{ end }}]`, filepath.Join(dir, "plain"))
	safe := target(t, "safe", `[{{ range safeTree "empty" }}{{ .Key }}{{ end }}]`, filepath.Join(dir, "safe"))
	err := NewRunner(sourceOf(srv.Client), []*Target{plain, safe}, Options{Once: true, OnceTimeout: 300 * time.Millisecond}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "safe needs kv.list(empty)") {
		t.Fatalf("Run = %v, want safe to miss kv.list(empty)", err)
	}
	if got := readFile(t, filepath.Join(dir, "plain")); got != "[]" {
		t.Fatalf("plain = %q", got)
	}
}

// Parse errors name the file, line and column; unknown functions are parse
// errors.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"line one\n  {{ nosuch \"x\" }}", `t.ctmpl:2:6: unknown function "nosuch"`},
		{"{{ key \"a\" }}\n{{ if }}", "t.ctmpl:2:"},
		{"{{ range ls \"a\" }}", "t.ctmpl:1:"},
	} {
		_, err := NewTemplate(TemplateOptions{Name: "t.ctmpl", Text: tc.text})
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("parse %q: %v, want a ParseError starting %q", tc.text, err, tc.want)
		}
	}
}

// A template's own wait holds only that template: a change rewrites the
// template without one at once while the one with an hour's window keeps
// its old file; a short window ends and its file is written.
func TestPerTemplateWait(t *testing.T) {
	srv := servertest.Start(t)
	put(t, srv.Client, "v", "1")
	dir := t.TempDir()
	now := target(t, "now", `{{ key "v" }}`, filepath.Join(dir, "now"))
	hour := target(t, "hour", `{{ key "v" }}`, filepath.Join(dir, "hour"))
	hour.Wait = Wait{Min: time.Hour, Max: time.Hour}
	short := target(t, "short", `{{ key "v" }}`, filepath.Join(dir, "short"))
	short.Wait = Wait{Min: 200 * time.Millisecond, Max: 400 * time.Millisecond}
	if err := os.WriteFile(hour.Destination, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- NewRunner(sourceOf(srv.Client), []*Target{now, hour, short}, Options{}).Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	servertest.Eventually(t, "the first renders", func() bool {
		return readFile(t, now.Destination) == "1" && readFile(t, short.Destination) == "1"
	})
	put(t, srv.Client, "v", "2")
	servertest.Eventually(t, "the template without a wait rewritten", func() bool { return readFile(t, now.Destination) == "2" })
	servertest.Eventually(t, "the short window ended", func() bool { return readFile(t, short.Destination) == "2" })
	if got := readFile(t, hour.Destination); got != "1" {
		t.Fatalf("the template with an hour's wait was rewritten to %q", got)
	}
}
