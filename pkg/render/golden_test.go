package render

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

var update = flag.Bool("update", false, "rewrite the golden files from what render produces (then check them by hand)")

const corpus = "../../testdata/render"

// seedKV is the data the corpus renders from.
func seedKV(t *testing.T, c *consulapi.Client) {
	put(t, c,
		"app/name", "web", "app/port", "8080", "app/env", "",
		"hosts/a", "10.0.0.1", "hosts/b", "10.0.0.2", "hosts/dir/", "", "hosts/sub/c", "10.0.0.3",
		"conf/json", `{"db":{"host":"db1","port":5432},"replicas":[1,2]}`,
		"conf/yaml", "a: 1\nb:\n  - x\n  - y\n",
		"flags/feature_x", "true", "nums/max", "10",
	)
}

// TestGolden renders every template of the corpus (consul-template's
// language) against a server seeded above and compares the output with
// its golden file, whose content was worked out by hand from
// consul-template's documentation.
func TestGolden(t *testing.T) {
	srv := servertest.Start(t)
	seedKV(t, srv.Client)
	seedCatalog(t, srv.Client)
	t.Setenv("KVX_RENDER_TEST", "set")
	now = func() time.Time { return time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) }
	defer func() { now = time.Now }()
	sources, err := filepath.Glob(filepath.Join(corpus, "*.ctmpl"))
	if err != nil || len(sources) < 25 {
		t.Fatalf("corpus has %d templates (%v), want at least 25", len(sources), err)
	}
	out := t.TempDir()
	var targets []*Target
	for _, src := range sources {
		text, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := NewTemplate(TemplateOptions{Name: filepath.Base(src), Text: string(text)})
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, &Target{Template: tmpl, Destination: filepath.Join(out, filepath.Base(src))})
	}
	if err := NewRunner(sourceOf(srv.Client), targets, Options{Once: true, OnceTimeout: 20 * time.Second}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, src := range sources {
		golden := strings.TrimSuffix(src, ".ctmpl") + ".golden"
		got, err := os.ReadFile(filepath.Join(out, filepath.Base(src)))
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s:\n got %q\nwant %q", filepath.Base(src), got, want)
		}
	}
}
