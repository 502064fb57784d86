package render

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// String helpers take the piped string last, as consul-template's do.

func toLower(s string) string { return strings.ToLower(s) }
func toUpper(s string) string { return strings.ToUpper(s) }

// toTitle upper-cases the first letter of each word and leaves the rest
// as it is ("hello wORLD" -> "Hello WORLD").
func toTitle(s string) string { return cases.Title(language.Und, cases.NoLower).String(s) }

func trim(cutset, s string) string         { return strings.Trim(s, cutset) }
func trimPrefix(prefix, s string) string   { return strings.TrimPrefix(s, prefix) }
func trimSuffix(suffix, s string) string   { return strings.TrimSuffix(s, suffix) }
func trimSpace(s string) string            { return strings.TrimSpace(s) }
func join(sep string, a []string) string   { return strings.Join(a, sep) }
func replaceAll(from, to, s string) string { return strings.ReplaceAll(s, from, to) }

// split cuts s (space-trimmed) at sep; an empty or blank s gives an empty
// list, not a list of one empty string.
func split(sep, s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return []string{}
	}
	return strings.Split(s, sep)
}

// splitToMap cuts s at sep1, then each part at the first sep2 into a key
// and a value; a part without sep2 is left out.
func splitToMap(sep1, sep2, s string) map[string]string {
	m := map[string]string{}
	s = strings.TrimSpace(s)
	if s == "" {
		return m
	}
	for _, part := range strings.Split(s, sep1) {
		if k, v, ok := strings.Cut(part, sep2); ok {
			m[k] = v
		}
	}
	return m
}

func regexMatch(re, s string) (bool, error) {
	r, err := regexp.Compile(re)
	if err != nil {
		return false, fmt.Errorf("regexMatch: %w", err)
	}
	return r.MatchString(s), nil
}

func regexReplaceAll(re, replacement, s string) (string, error) {
	r, err := regexp.Compile(re)
	if err != nil {
		return "", fmt.Errorf("regexReplaceAll: %w", err)
	}
	return r.ReplaceAllString(s, replacement), nil
}

// indent prefixes every line that is not empty with spaces spaces.
func indent(spaces int, s string) (string, error) {
	if spaces < 0 {
		return "", fmt.Errorf("indent: %d spaces: want 0 or more", spaces)
	}
	prefix := strings.Repeat(" ", spaces)
	var b strings.Builder
	b.Grow(len(s) + spaces*(strings.Count(s, "\n")+1))
	lineStart := true
	for i := 0; i < len(s); i++ {
		if lineStart && s[i] != '\n' {
			b.WriteString(prefix)
		}
		b.WriteByte(s[i])
		lineStart = s[i] == '\n'
	}
	return b.String(), nil
}

func base64Encode(s string) string    { return base64.StdEncoding.EncodeToString([]byte(s)) }
func base64URLEncode(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) }

func base64Decode(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("base64Decode: %w", err)
	}
	return string(b), nil
}

func base64URLDecode(s string) (string, error) {
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("base64URLDecode: %w", err)
	}
	return string(b), nil
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func md5sum(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// hmacSHA256Hex is the hex HMAC-SHA256 of message under key.
func hmacSHA256Hex(message, key string) string {
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(message))
	return hex.EncodeToString(h.Sum(nil))
}
