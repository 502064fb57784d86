package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FieldError is an error in one field of one file.
type FieldError struct {
	File  string // base name of the file
	Field string // dotted path, e.g. "services[1].check.interval"; "" for the whole file
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + ": " + e.Field + ": " + e.Msg
}

// errList collects the errors of one file, in the order found.
type errList struct {
	file string
	errs []error
}

func (l *errList) add(field, format string, args ...any) {
	l.errs = append(l.errs, &FieldError{File: l.file, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// aliases maps normalized spellings Consul accepts to the normalized
// canonical key, beyond what normalization already folds.
var aliases = map[string]string{"scriptargs": "args"}

// normalize folds the spellings of a key: case-insensitive, underscores
// ignored, so "deregister_critical_service_after" and
// "DeregisterCriticalServiceAfter" are one key.
func normalize(k string) string {
	n := strings.ToLower(strings.ReplaceAll(k, "_", ""))
	if a, ok := aliases[n]; ok {
		return a
	}
	return n
}

// node is one JSON object being decoded: fields are taken by their
// canonical snake_case name, and finish reports the ones nobody took.
type node struct {
	path string
	keys map[string]string // normalized -> key as written
	vals map[string]any
	used map[string]bool
	errs *errList
}

func newNode(path string, m map[string]any, errs *errList) *node {
	n := &node{path: path, keys: map[string]string{}, vals: map[string]any{}, used: map[string]bool{}, errs: errs}
	for _, k := range sortedKeys(m) {
		nk := normalize(k)
		if prev, dup := n.keys[nk]; dup {
			errs.add(n.join(k), "given twice, as %q and %q", prev, k)
			continue
		}
		n.keys[nk] = k
		n.vals[nk] = m[k]
	}
	return n
}

// join is the path of a field of n, spelled as written.
func (n *node) join(key string) string {
	if n.path == "" {
		return key
	}
	return n.path + "." + key
}

// pathOf is the path of a field of n by its canonical name, spelled as
// written when it is present.
func (n *node) pathOf(canon string) string {
	if k, ok := n.keys[normalize(canon)]; ok {
		return n.join(k)
	}
	return n.join(canon)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// get takes a field by its canonical name: its value, its path and whether
// it is present (a JSON null counts as absent).
func (n *node) get(canon string) (any, string, bool) {
	nk := normalize(canon)
	k, ok := n.keys[nk]
	if !ok {
		return nil, "", false
	}
	n.used[nk] = true
	v := n.vals[nk]
	return v, n.join(k), v != nil
}

func (n *node) str(canon string) string {
	v, p, ok := n.get(canon)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		n.errs.add(p, "is %s, want a string", describe(v))
	}
	return s
}

func (n *node) boolean(canon string) bool {
	v, p, ok := n.get(canon)
	if !ok {
		return false
	}
	b, isBool := v.(bool)
	if !isBool {
		n.errs.add(p, "is %s, want true or false", describe(v))
	}
	return b
}

// integer takes a non-negative whole number.
func (n *node) integer(canon string) int {
	v, p, ok := n.get(canon)
	if !ok {
		return 0
	}
	num, isNum := v.(json.Number)
	if !isNum {
		n.errs.add(p, "is %s, want a number", describe(v))
		return 0
	}
	i, err := strconv.Atoi(num.String())
	if err != nil || i < 0 {
		n.errs.add(p, "%s is not a whole number of 0 or more", num)
		return 0
	}
	return i
}

// duration takes a Go duration string of 0 or more.
func (n *node) duration(canon string) time.Duration {
	v, p, ok := n.get(canon)
	if !ok {
		return 0
	}
	s, isStr := v.(string)
	if !isStr {
		n.errs.add(p, "is %s, want a duration string such as \"10s\"", describe(v))
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n.errs.add(p, "%q is not a duration", s)
		return 0
	}
	if d < 0 {
		n.errs.add(p, "%q is negative", s)
		return 0
	}
	return d
}

func (n *node) strings(canon string) []string {
	v, p, ok := n.get(canon)
	if !ok {
		return nil
	}
	arr, isArr := v.([]any)
	if !isArr {
		n.errs.add(p, "is %s, want an array of strings", describe(v))
		return nil
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, isStr := e.(string)
		if !isStr {
			n.errs.add(fmt.Sprintf("%s[%d]", p, i), "is %s, want a string", describe(e))
			continue
		}
		out = append(out, s)
	}
	return out
}

func (n *node) stringMap(canon string) map[string]string {
	v, p, ok := n.get(canon)
	if !ok {
		return nil
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		n.errs.add(p, "is %s, want an object of strings", describe(v))
		return nil
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedKeys(m) {
		e := m[k]
		s, isStr := e.(string)
		if !isStr {
			n.errs.add(p+"."+k, "is %s, want a string", describe(e))
			continue
		}
		out[k] = s
	}
	return out
}

// header takes Consul's header form: {"Name": ["value", ...]}.
func (n *node) header(canon string) map[string][]string {
	v, p, ok := n.get(canon)
	if !ok {
		return nil
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		n.errs.add(p, "is %s, want an object of string arrays", describe(v))
		return nil
	}
	out := make(map[string][]string, len(m))
	for _, k := range sortedKeys(m) {
		e := m[k]
		arr, isArr := e.([]any)
		if !isArr {
			n.errs.add(p+"."+k, "is %s, want an array of strings", describe(e))
			continue
		}
		for i, x := range arr {
			s, isStr := x.(string)
			if !isStr {
				n.errs.add(fmt.Sprintf("%s.%s[%d]", p, k, i), "is %s, want a string", describe(x))
				continue
			}
			out[k] = append(out[k], s)
		}
	}
	return out
}

// object takes a nested object; nil when absent or not an object.
func (n *node) object(canon string) *node {
	v, p, ok := n.get(canon)
	if !ok {
		return nil
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		n.errs.add(p, "is %s, want an object", describe(v))
		return nil
	}
	return newNode(p, m, n.errs)
}

// objects takes an array of objects.
func (n *node) objects(canon string) []*node {
	v, p, ok := n.get(canon)
	if !ok {
		return nil
	}
	arr, isArr := v.([]any)
	if !isArr {
		n.errs.add(p, "is %s, want an array of objects", describe(v))
		return nil
	}
	var out []*node
	for i, e := range arr {
		ep := fmt.Sprintf("%s[%d]", p, i)
		m, isObj := e.(map[string]any)
		if !isObj {
			n.errs.add(ep, "is %s, want an object", describe(e))
			continue
		}
		out = append(out, newNode(ep, m, n.errs))
	}
	return out
}

// raw takes every field of n as it was written (JSON numbers as
// json.Number), for a consumer that validates them itself.
func (n *node) raw() map[string]any {
	out := make(map[string]any, len(n.keys))
	for nk, k := range n.keys {
		n.used[nk] = true
		out[k] = n.vals[nk]
	}
	return out
}

// unsupported refuses Consul fields kvx does not implement.
func (n *node) unsupported(canon ...string) {
	for _, c := range canon {
		if _, p, ok := n.get(c); ok {
			n.errs.add(p, "is a Consul field kvx does not support")
		}
	}
}

// ignored takes fields kvx accepts and does nothing with.
func (n *node) ignored(canon ...string) {
	for _, c := range canon {
		n.get(c)
	}
}

// finish reports every field nobody took, as Consul reports unknown keys.
func (n *node) finish() {
	var left []string
	for nk, k := range n.keys {
		if !n.used[nk] {
			left = append(left, k)
		}
	}
	sort.Strings(left)
	for _, k := range left {
		n.errs.add(n.join(k), "invalid config key")
	}
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return fmt.Sprintf("%t", v)
	case json.Number:
		return "the number " + v.String()
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
