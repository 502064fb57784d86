package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v2"
)

// The parse functions read "" as the zero value, as consul-template's do:
// a key that exists but is empty does not break a render.

func parseBool(s string) (bool, error) { return parseOr("parseBool", s, strconv.ParseBool) }

func parseInt(s string) (int64, error) {
	return parseOr("parseInt", s, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
}

func parseUint(s string) (uint64, error) {
	return parseOr("parseUint", s, func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) })
}

func parseFloat(s string) (float64, error) {
	return parseOr("parseFloat", s, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
}

// parseOr parses s, "" as T's zero value, naming the function on error.
func parseOr[T any](name, s string, parse func(string) (T, error)) (T, error) {
	var zero T
	if s == "" {
		return zero, nil
	}
	v, err := parse(s)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// parseJSON decodes any JSON value; "" is an empty map.
func parseJSON(s string) (any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("parseJSON: %w", err)
	}
	return v, nil
}

// parseYAML decodes any YAML value with yaml.v2, as consul-template does
// (so nested maps are map[interface{}]interface{}); "" is an empty map.
func parseYAML(s string) (any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("parseYAML: %w", err)
	}
	return v, nil
}

// toJSON is compact JSON (maps with sorted keys, HTML characters escaped).
func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("toJSON: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

// toJSONPretty is JSON indented by two spaces.
func toJSONPretty(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("toJSONPretty: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

func toUnescapedJSON(v any) (string, error) { return unescapedJSON("toUnescapedJSON", v, "") }
func toUnescapedJSONPretty(v any) (string, error) {
	return unescapedJSON("toUnescapedJSONPretty", v, "  ")
}

// unescapedJSON is JSON without HTML escaping (<, >, & as they are).
func unescapedJSON(name string, v any, indent string) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return strings.TrimRight(buf.String(), "\r\n"), nil
}

// toYAML is YAML as yaml.v2 writes it, trailing newline trimmed.
func toYAML(v any) (string, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("toYAML: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

// toTOML is TOML as BurntSushi/toml writes it, trimmed.
func toTOML(v any) (string, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(v); err != nil {
		return "", fmt.Errorf("toTOML: %w", err)
	}
	return string(bytes.TrimSpace(buf.Bytes())), nil
}
