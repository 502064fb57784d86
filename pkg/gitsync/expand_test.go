package gitsync

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		file, data, arrays string
		want               map[string]string
	}{
		{"a.json", `{"db":{"port":5432,"big":12345678901234567890,"f":1e3}}`, ArraysIndex,
			map[string]string{"db/port": "5432", "db/big": "12345678901234567890", "db/f": "1e3"}},
		{"a.json", `{"l":[{"x":1},[true,null]],"s/lash":"v","p%":"q"}`, ArraysIndex,
			map[string]string{"l/0/x": "1", "l/1/0": "true", "l/1/1": "", "s%2Flash": "v", "p%25": "q"}},
		{"a.json", `{"l":[1,2],"k":"v"}`, ArraysSkip, map[string]string{"k": "v"}},
		{"a.json", `"just a string"`, ArraysIndex, map[string]string{"": "just a string"}},
		{"a.yml", "a:\n  b: 1.50\n  c: yes\n  d: ~\n  e: |\n    two\n    lines\nanchor: &x {k: v}\nref: *x\n", ArraysIndex,
			map[string]string{"a/b": "1.5", "a/c": "yes", "a/d": "", "a/e": "two\nlines\n", "anchor/k": "v", "ref/k": "v"}},
		{"a.yaml", "1: one\ntrue: t\nlist:\n  - a\n  - b\n", ArraysIndex, map[string]string{"1": "one", "true": "t", "list/0": "a", "list/1": "b"}},
		{"a.properties", "! comment\na.b.c=1\nkey\\ with\\ space : v\\tw\nu=\\u00e9\ndup=1\ndup=2\nempty\n", ArraysIndex,
			map[string]string{"a.b.c": "1", "key with space": "v\tw", "u": "é", "dup": "2", "empty": ""}},
		{"a.properties", "base=/srv\npath=${base}/app\nmissing=${nope}\n", ArraysIndex,
			map[string]string{"base": "/srv", "path": "/srv/app", "missing": "${nope}"}},
	}
	for _, tt := range tests {
		t.Run(tt.file+" "+tt.data[:min(20, len(tt.data))], func(t *testing.T) {
			leaves, err := expand(tt.file, []byte(tt.data), tt.arrays)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, l := range leaves {
				got[l.path] = string(l.value)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("%s = %q, want %q (all: %q)", k, got[k], v, got)
				}
			}
		})
	}
}

func TestExpandErrorsNameFileLineColumn(t *testing.T) {
	tests := []struct{ file, data, want string }{
		{"x.json", "{\"a\": 1,\n \"b\" 2}", "x.json:2:6:"},
		{"x.json", "{} {}", "x.json:1:4: data after the JSON value"},
		{"x.json", `{"": 1}`, `x.json: an empty key name`},
		{"x.yaml", "a: 1\nb: \"unterminated\n", "x.yaml:2:4:"},
		{"x.yaml", "a: 1\nb: 2\nb: 3\n", `x.yaml:3:1: mapping key "b" already defined`},
		{"x.yaml", "a: [1, 2\n", "x.yaml:1:"},
		{"x.properties", "ok=1\nbad=\\u00zz\n", "x.properties:2:5: bad unicode escape"},
	}
	for _, tt := range tests {
		_, err := expand(tt.file, []byte(tt.data), ArraysIndex)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %q: error %v, want %q", tt.file, tt.data, err, tt.want)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*.yaml", "a/b/c.yaml", true},
		{"*.yaml", "c.yml", false},
		{"etc/*", "etc/a", true},
		{"etc/*", "etc/a/b", false},
		{"etc/**", "etc/a/b", true},
		{"**/secret", "a/b/secret", true},
		{"**/secret", "secret", true},
		{"a/**/z", "a/z", true},
		{"a/**/z", "a/b/c/z", true},
		{"a/**/z", "a/b/c/y", false},
	}
	for _, tt := range tests {
		if got, err := matchGlob(tt.pattern, tt.name); got != tt.want || err != nil {
			t.Errorf("matchGlob(%q, %q) = %v, %v", tt.pattern, tt.name, got, err)
		}
	}
	if _, err := matchGlob("[", "x"); err == nil {
		t.Error("bad pattern accepted")
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "git2kv.yaml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadConfig(write(`
cache_dir: /tmp/c
interval: 30s
repos:
  - url: https://git.example.com/ops/config.git
    branches: [main, release/1]
    mountpoint: /kv/
    expand: true
    max_delete: "10"
  - name: second
    url: file:///srv/second
    skip_branch_name: true
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Repos[0]
	if r.Name != "config" || r.Mountpoint != "kv" || r.Prefix("release/1") != "kv/config/release/1/" || r.RefKey("main") != "kv/config/main.ref" || c.Interval.Seconds() != 30 {
		t.Fatalf("config: %+v", c)
	}
	if c.Repos[1].Branches[0] != DefaultBranch || c.Repos[1].Large != LargeRefuse || c.Repos[1].Prefix("main") != "second/" {
		t.Fatalf("defaults: %+v", c.Repos[1])
	}
	bad := []struct{ yaml, want string }{
		{"repos:\n  - url: x\n    bogus: 1\n", "git2kv.yaml:3:5:"},
		{"repos:\n  - url: x\n    branches: main\n", "git2kv.yaml:3:15:"},
		{"repos:\n  - url: a\n    name: x\n  - url: b\n    name: x\n", `name "x" used twice`},
		{"repos:\n  - url: a\n    skip_repo_name: true\n    skip_branch_name: true\n", "root of KV"},
		{"repos:\n  - url: a/one\n    mountpoint: m\n    skip_repo_name: true\n  - url: b/two\n    mountpoint: m\n    skip_repo_name: true\n", "overlaps"},
		{"repos:\n  - url: a\n    max_delete: lots\n", `max_delete "lots"`},
		{"repos:\n  - url: a\n    include: ['[']\n", `glob "["`},
		{"repos:\n  - url: a\n    branches: ['a b']\n", "not a valid branch name"},
		{"repos: []\n", "no repos"},
	}
	for _, tt := range bad {
		_, err := LoadConfig(write(tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.yaml, err, tt.want)
		}
	}
	var pe *ParseError
	if _, err := LoadConfig(write("repos:\n  - url: x\n    bogus: 1\n")); !errors.As(err, &pe) || pe.Line != 3 {
		t.Errorf("not a ParseError at line 3: %#v", err)
	}
}
