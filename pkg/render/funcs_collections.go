package render

import (
	"fmt"
	"iter"
	"reflect"
	"sort"
	"strings"
)

// in reports whether l holds v: for a list, an element equal to v (signed
// integers of any size compared by value, floats likewise, strings of the
// same type); for a string, v as a substring. Anything else holds nothing.
// These are consul-template's rules, unsigned elements included (never
// equal).
func in(l, v any) bool {
	lv, vv := reflect.ValueOf(l), reflect.ValueOf(v)
	switch lv.Kind() {
	case reflect.Array, reflect.Slice:
		for i := 0; i < lv.Len(); i++ {
			e := lv.Index(i)
			if e.Kind() == reflect.Interface {
				e = e.Elem()
			}
			if equalScalar(e, vv) {
				return true
			}
		}
	case reflect.String:
		return vv.IsValid() && vv.Type() == lv.Type() && strings.Contains(lv.String(), vv.String())
	}
	return false
}

func equalScalar(e, v reflect.Value) bool {
	if !e.IsValid() || !v.IsValid() {
		return false
	}
	switch e.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		switch v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return e.Int() == v.Int()
		}
	case reflect.Float32, reflect.Float64:
		switch v.Kind() {
		case reflect.Float32, reflect.Float64:
			return e.Float() == v.Float()
		}
	case reflect.String:
		return e.Type() == v.Type() && e.String() == v.String()
	}
	return false
}

// contains is in with its arguments the other way round, for pipes:
// {{ if .Tags | contains "web" }}.
func contains(v, l any) bool { return in(l, v) }

// containsAll: every element of v is in l (true for an empty v).
func containsAll(v []any, l any) bool {
	for _, x := range v {
		if !in(l, x) {
			return false
		}
	}
	return true
}

// containsAny: some element of v is in l.
func containsAny(v []any, l any) bool { return !containsNone(v, l) }

// containsNone: no element of v is in l (true for an empty v).
func containsNone(v []any, l any) bool {
	for _, x := range v {
		if in(l, x) {
			return false
		}
	}
	return true
}

// containsNotAll: some element of v is not in l.
func containsNotAll(v []any, l any) bool { return !containsAll(v, l) }

// explodeMap turns a flat map whose keys are paths ("a/b/c") into nested
// maps, in key order; a key that is both a value and a parent is an error.
func explodeMap(flat map[string]any) (map[string]any, error) {
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string]any{}
	for _, k := range keys {
		if err := explodeInto(out, k, flat[k], k); err != nil {
			return nil, fmt.Errorf("explodeMap: %w", err)
		}
	}
	return out, nil
}

// explodeInto sets value at path under m, making the maps on the way; an
// empty last segment ("a/") makes the map and sets nothing.
func explodeInto(m map[string]any, path string, value any, full string) error {
	top, rest, nested := strings.Cut(path, "/")
	if !nested {
		if top != "" {
			m[top] = value
		}
		return nil
	}
	if _, ok := m[top]; !ok {
		m[top] = map[string]any{}
	}
	child, ok := m[top].(map[string]any)
	if !ok {
		return fmt.Errorf("not a map: %q: %q already has value %q", full, top, m[top])
	}
	return explodeInto(child, rest, value, full)
}

// loop counts from 0 up to (not including) its argument, or from the first
// argument up to the second: {{ range loop 3 }} or {{ range loop 5 8 }}.
// Integers of any kind and strings holding one are taken. The numbers are
// made as the range asks for them.
func loop(args ...any) (iter.Seq[int64], error) {
	var from, to any
	switch len(args) {
	case 1:
		from, to = 0, args[0]
	case 2:
		from, to = args[0], args[1]
	default:
		return nil, fmt.Errorf("loop: %d arguments, want 1 or 2", len(args))
	}
	start, err := loopBound(from)
	if err != nil {
		return nil, err
	}
	stop, err := loopBound(to)
	if err != nil {
		return nil, err
	}
	return func(yield func(int64) bool) {
		for i := start; i < stop; i++ {
			if !yield(i) {
				return
			}
		}
	}, nil
}

func loopBound(v any) (int64, error) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(rv.Uint()), nil
	case reflect.String:
		return parseInt(rv.String())
	}
	return 0, fmt.Errorf("loop: bad argument type: %T", v)
}
