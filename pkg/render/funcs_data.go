package render

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// deps collects the dependencies one execution used and those it still
// misses, in first-use order, each once.
type deps struct {
	seen    map[string]bool
	used    []Dep
	missing []Dep
	missed  map[string]bool
}

func (s *deps) use(d Dep) {
	if s.seen == nil {
		s.seen, s.missed = map[string]bool{}, map[string]bool{}
	}
	if !s.seen[d.String()] {
		s.seen[d.String()] = true
		s.used = append(s.used, d)
	}
}

func (s *deps) miss(d Dep) {
	if !s.missed[d.String()] {
		s.missed[d.String()] = true
		s.missing = append(s.missing, d)
	}
}

// recall records d as used and returns its value if it has been received,
// else records it as missing.
func (s *deps) recall(b *Brain, d Dep) (any, bool) {
	s.use(d)
	v, ok := b.Recall(d)
	if !ok {
		s.miss(d)
	}
	return v, ok
}

// errOutOfScope answers the Vault functions: kvx reads no Vault.
func errOutOfScope(name string) func(...any) (any, error) {
	return func(...any) (any, error) {
		return nil, fmt.Errorf("%s: Vault secrets are out of kvx render's scope (no Vault client); render them with a Vault-aware tool", name)
	}
}

// dataFuncs are the functions that read a dependency: from brain when it
// has been received, else they record it as missing and return an empty
// value (the pass is then not written).
func dataFuncs(b *Brain, s *deps, sandbox string) template.FuncMap {
	kvGet := func(fn string, kind Kind, k string) (any, bool, error) {
		d, err := parseKeyDep(fn, kind, k)
		if err != nil {
			return nil, false, err
		}
		v, ok := s.recall(b, d)
		return v, ok, nil
	}
	list := func(fn, prefix string, keep func(*KeyPair) bool, safe bool) ([]*KeyPair, error) {
		out := []*KeyPair{}
		if prefix == "" {
			return out, nil
		}
		d, err := parseKeyDep(fn, KindList, prefix)
		if err != nil {
			return out, err
		}
		v, ok := s.recall(b, d)
		if !ok {
			return out, nil
		}
		for _, p := range v.([]*KeyPair) {
			if keep(p) {
				out = append(out, p)
			}
		}
		if len(out) == 0 && safe {
			s.miss(d) // safeLs/safeTree: an empty answer is not rendered
		}
		return out, nil
	}
	topLevel := func(p *KeyPair) bool { return p.Key != "" && !strings.Contains(p.Key, "/") }
	leaf := func(p *KeyPair) bool { return p.Key != "" && !strings.HasSuffix(p.Key, "/") }
	return template.FuncMap{
		"key": func(k string) (string, error) {
			if k == "" {
				return "", nil
			}
			v, ok, err := kvGet("key", KindKeyBlock, k)
			if !ok || v == nil {
				return "", err
			}
			return v.(string), nil
		},
		"keyExists": func(k string) (bool, error) {
			if k == "" {
				return false, nil
			}
			v, ok, err := kvGet("keyExists", KindKey, k)
			return ok && v != nil, err
		},
		"keyOrDefault": func(k, def string) (string, error) {
			if k == "" {
				return def, nil
			}
			v, ok, err := kvGet("keyOrDefault", KindKey, k)
			if err != nil {
				return "", err
			}
			if !ok || v == nil || v.(string) == "" {
				return def, nil
			}
			return v.(string), nil
		},
		"ls":       func(p string) ([]*KeyPair, error) { return list("ls", p, topLevel, false) },
		"safeLs":   func(p string) ([]*KeyPair, error) { return list("safeLs", p, topLevel, true) },
		"tree":     func(p string) ([]*KeyPair, error) { return list("tree", p, leaf, false) },
		"safeTree": func(p string) ([]*KeyPair, error) { return list("safeTree", p, leaf, true) },
		"service": func(args ...string) ([]*HealthService, error) {
			out := []*HealthService{}
			if len(args) == 0 || args[0] == "" {
				return out, nil
			}
			d, err := parseServiceDep(strings.Join(args, "|"))
			if err != nil {
				return nil, err
			}
			if v, ok := s.recall(b, d); ok {
				return v.([]*HealthService), nil
			}
			return out, nil
		},
		"services": func(args ...string) ([]*CatalogSnippet, error) {
			d, err := parseServicesDep(strings.Join(args, ""))
			if err != nil {
				return nil, err
			}
			if v, ok := s.recall(b, d); ok {
				return v.([]*CatalogSnippet), nil
			}
			return []*CatalogSnippet{}, nil
		},
		"node": func(args ...string) (*CatalogNode, error) {
			d, err := parseNodeDep(strings.Join(args, ""))
			if err != nil {
				return nil, err
			}
			if v, ok := s.recall(b, d); ok && v != nil {
				return v.(*CatalogNode), nil
			}
			return nil, nil
		},
		"nodes": func(args ...string) ([]*Node, error) {
			d, err := parseNodesDep(strings.Join(args, ""))
			if err != nil {
				return nil, err
			}
			if v, ok := s.recall(b, d); ok {
				return v.([]*Node), nil
			}
			return []*Node{}, nil
		},
		"file": func(p string) (string, error) {
			p = strings.TrimSpace(p)
			if p == "" {
				return "", nil
			}
			path, err := sandboxed(sandbox, p)
			if err != nil {
				return "", err
			}
			v, ok := s.recall(b, Dep{Kind: KindFile, Path: path})
			if !ok || v == nil {
				return "", nil
			}
			return v.(string), nil
		},
		"secret":  errOutOfScope("secret"),
		"secrets": errOutOfScope("secrets"),
	}
}

// sandboxed resolves p (relative to the working directory) and, with a
// sandbox, refuses a path outside it, symbolic links resolved.
func sandboxed(sandbox, p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("file %q: %w", p, err)
	}
	if sandbox == "" {
		return abs, nil
	}
	real := abs
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		real = r
	}
	box, err := filepath.Abs(sandbox)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(box, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("file %q: outside the sandbox %s", p, sandbox)
	}
	return abs, nil
}

// byKey groups pairs by the first part of their key; the pairs' Key
// becomes the rest, and pairs with nothing after the first part are left
// out (consul-template's byKey).
func byKey(pairs []*KeyPair) (map[string]map[string]*KeyPair, error) {
	m := map[string]map[string]*KeyPair{}
	for _, p := range pairs {
		top, rest, _ := strings.Cut(p.Key, "/")
		if rest == "" {
			continue
		}
		if m[top] == nil {
			m[top] = map[string]*KeyPair{}
		}
		c := *p
		c.Key = rest
		m[top][rest] = &c
	}
	return m, nil
}

// byTag groups services, catalog snippets or catalog node services by tag.
func byTag(in any) (map[string][]any, error) {
	m := map[string][]any{}
	switch l := in.(type) {
	case nil:
	case []*CatalogSnippet:
		for _, s := range l {
			for _, t := range s.Tags {
				m[t] = append(m[t], s)
			}
		}
	case []*HealthService:
		for _, s := range l {
			for _, t := range s.Tags {
				m[t] = append(m[t], s)
			}
		}
	case []*CatalogNodeService:
		for _, s := range l {
			for _, t := range s.Tags {
				m[t] = append(m[t], s)
			}
		}
	default:
		return nil, fmt.Errorf("byTag: wrong argument type %T", in)
	}
	return m, nil
}

var metaUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_-]`)

// byMeta groups services by the values of comma-separated meta keys, joined
// with "_"; a key with "|int" is zero-padded to five digits so groups sort
// numerically; a missing key groups as _no_<key>_ (consul-template's byMeta).
func byMeta(meta string, services []*HealthService) (map[string][]*HealthService, error) {
	get := func(m map[string]string, key string) string {
		real := strings.TrimSuffix(key, "|int")
		if v := m[real]; v != "" {
			return v
		}
		if strings.HasSuffix(key, "|int") {
			return "0"
		}
		return "_no_" + real + "_"
	}
	groups := map[string][]*HealthService{}
	for _, s := range services {
		var parts []string
		for _, key := range strings.Split(meta, ",") {
			v := get(s.ServiceMeta, key)
			if strings.HasSuffix(key, "|int") {
				i, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("byMeta: cannot parse %v as number: %w", v, err)
				}
				v = fmt.Sprintf("%05d", i)
			}
			parts = append(parts, metaUnsafe.ReplaceAllString(v, "_"))
		}
		k := strings.Join(parts, "_")
		groups[k] = append(groups[k], s)
	}
	return groups, nil
}

// explode turns a list of pairs into nested maps by their key's parts.
func explode(pairs []*KeyPair) (map[string]any, error) {
	m := map[string]any{}
	for _, p := range pairs {
		if err := explodeInto(m, p.Key, p.Value, p.Key); err != nil {
			return nil, fmt.Errorf("explode: %w", err)
		}
	}
	return m, nil
}

// envFuncs read the render process's environment, overlaid by extra
// (KEY=VALUE entries, later ones winning as in consul-template's env list).
func envFuncs(extra []string) template.FuncMap {
	lookup := func(k string) (string, bool) {
		for i := len(extra) - 1; i >= 0; i-- {
			if name, v, _ := strings.Cut(extra[i], "="); name == k {
				return v, true
			}
		}
		return os.LookupEnv(k)
	}
	return template.FuncMap{
		"env": func(k string) (string, error) { v, _ := lookup(k); return v, nil },
		"envOrDefault": func(k, def string) (string, error) {
			if v, ok := lookup(k); ok {
				return v, nil
			}
			return def, nil
		},
		"mustEnv": func(k string) (string, error) {
			if v, _ := lookup(k); v != "" {
				return v, nil
			}
			return "", errors.New("mustEnv: environment variable " + k + " is empty or unset")
		},
	}
}
