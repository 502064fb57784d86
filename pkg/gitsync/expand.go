package gitsync

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// leaf is one key of an expanded file: its path below the file's key
// ("" is the file's key itself) and its value.
type leaf struct {
	path  string
	value []byte
}

// expand turns a .json, .yaml/.yml or .properties file into one key per
// leaf. Objects become path segments (a "/" in a name is written %2F and
// "%" is %25, so every segment stays one); arrays become one segment per
// index (arrays "index") or are left out as git2consul did (arrays
// "skip"); scalars are their text: numbers as written in JSON and in
// shortest form from YAML, true/false, and null as an empty value.
func expand(file string, data []byte, arrays string) ([]leaf, error) {
	var (
		v   any
		err error
	)
	switch formatOf(file) {
	case "json":
		v, err = parseJSON(file, data)
	case "yaml":
		v, err = parseYAML(file, data)
	case "properties":
		return parseProperties(file, data)
	default:
		return []leaf{{value: data}}, nil
	}
	if err != nil {
		return nil, err
	}
	var out []leaf
	if err := flatten(file, "", v, arrays, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func flatten(file, at string, v any, arrays string, out *[]leaf) error {
	child := func(name string) (string, error) {
		if name == "" {
			return "", fmt.Errorf("%s: an empty key name under %q: it cannot be a key segment", file, "/"+at)
		}
		if at == "" {
			return escapeSegment(name), nil
		}
		return at + "/" + escapeSegment(name), nil
	}
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			p, err := child(k)
			if err != nil {
				return err
			}
			if err := flatten(file, p, x[k], arrays, out); err != nil {
				return err
			}
		}
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[fmt.Sprint(k)] = val
		}
		return flatten(file, at, m, arrays, out)
	case []any:
		if arrays == ArraysSkip {
			return nil
		}
		for i, e := range x {
			p, _ := child(strconv.Itoa(i))
			if err := flatten(file, p, e, arrays, out); err != nil {
				return err
			}
		}
	default:
		*out = append(*out, leaf{path: at, value: scalar(x)})
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func scalar(v any) []byte {
	switch x := v.(type) {
	case nil:
		return []byte{}
	case string:
		return []byte(x)
	case json.Number:
		return []byte(x)
	case bool:
		return strconv.AppendBool(nil, x)
	case float64:
		return strconv.AppendFloat(nil, x, 'g', -1, 64)
	case float32:
		return strconv.AppendFloat(nil, float64(x), 'g', -1, 32)
	}
	return []byte(fmt.Sprint(v))
}

// escapeSegment keeps a name one key segment.
func escapeSegment(s string) string {
	if !strings.ContainsAny(s, "/%") {
		return s
	}
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(s)
}
