// Package kvx_test holds checks of the module's shape: which package may
// import what, as ../shared/DESIGN.md lays down.
package kvx_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/kvxproject/kvx/"

type goFile struct {
	dir     string // slash-separated, relative to the module root
	path    string
	test    bool
	imports []string
	ast     *ast.File
}

func goFiles(t *testing.T) []goFile {
	t.Helper()
	var out []goFile
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || path == filepath.Join("test", "conformance") || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		full, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		gf := goFile{dir: filepath.ToSlash(filepath.Dir(path)), path: filepath.ToSlash(path), test: strings.HasSuffix(path, "_test.go"), ast: full}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			gf.imports = append(gf.imports, p)
		}
		out = append(out, gf)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 20 {
		t.Fatalf("found only %d Go files: wrong directory?", len(out))
	}
	return out
}

func TestImportRules(t *testing.T) {
	// owner: the only directory whose non-test code may import a prefix.
	owners := []struct{ prefix, dir string }{
		{"github.com/hashicorp/raft", "pkg/server"}, // raft, raft-wal, raft-boltdb
		{"github.com/DataDog/datadog-go", "pkg/metrics"},
		{"github.com/go-git/go-git", "pkg/gitsync"},
		{"github.com/fsnotify/fsnotify", "pkg/watch"},
		{"github.com/hashicorp/consul/api/watch", "pkg/consulwatch"},
	}
	leaves := []string{"pkg/server/state", "pkg/metrics", "pkg/agent/config", "pkg/dns", "pkg/tlsutil", "pkg/connlimit", "pkg/httpd"} // import nothing of ours
	// onlyOurs: the only packages of ours a directory's non-test code may import.
	onlyOurs := map[string][]string{
		"pkg/agent/checks": {module + "pkg/agent/config"},
		"pkg/agent/local":  {module + "pkg/agent/config", module + "pkg/agent/checks"},
	}
	leaves = append(leaves, "pkg/acl") // the ACL core, which servers, agents and DNS use
	for _, f := range goFiles(t) {
		for _, imp := range f.imports {
			for _, o := range owners {
				if strings.HasPrefix(imp, o.prefix) && !f.test && f.dir != o.dir {
					t.Errorf("%s imports %s: only %s may", f.path, imp, o.dir)
				}
			}
			for _, leaf := range leaves {
				if f.dir == leaf && !f.test && strings.HasPrefix(imp, module) {
					t.Errorf("%s imports %s: %s is a leaf", f.path, imp, leaf)
				}
			}
			if allowed, ok := onlyOurs[f.dir]; ok && !f.test && strings.HasPrefix(imp, module) && !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s: %s may import only %v of ours", f.path, imp, f.dir, allowed)
			}
			if imp == module+"pkg/servertest" && !f.test {
				t.Errorf("%s imports servertest outside a test", f.path)
			}
			if strings.HasPrefix(f.dir, "pkg/") && strings.HasPrefix(imp, module+"cmd/") {
				t.Errorf("%s imports a command", f.path)
			}
		}
	}
}

func TestOnlyClientBuildsAPIClientsAndOnlyMainExits(t *testing.T) {
	for _, f := range goFiles(t) {
		ast.Inspect(f.ast, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			switch {
			case pkg.Name == "consulapi" && sel.Sel.Name == "NewClient" && f.dir != "pkg/client":
				t.Errorf("%s builds a Consul API client: only pkg/client may", f.path)
			case pkg.Name == "os" && sel.Sel.Name == "Exit" && !strings.HasSuffix(f.path, "/main.go") && !strings.HasSuffix(f.path, "main_test.go"):
				t.Errorf("%s calls os.Exit: only main may", f.path)
			case pkg.Name == "log" && (sel.Sel.Name == "Fatal" || sel.Sel.Name == "Fatalf"):
				t.Errorf("%s calls log.%s", f.path, sel.Sel.Name)
			}
			return true
		})
	}
}

func TestEveryPackageHasADocGo(t *testing.T) {
	dirs := map[string]bool{}
	docs := map[string]bool{}
	for _, f := range goFiles(t) {
		if strings.HasPrefix(f.dir, "pkg/") && !f.test {
			dirs[f.dir] = true
			if strings.HasSuffix(f.path, "/doc.go") {
				docs[f.dir] = true
			}
		}
	}
	for d := range dirs {
		if !docs[d] {
			t.Errorf("%s has no doc.go", d)
		}
	}
}
