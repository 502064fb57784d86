package gitsync

import (
	"regexp"
	"strconv"
	"strings"
)

// parseProperties reads a Java .properties file: one key per property
// under the file's key (dots stay in the name), "=", ":" or white space
// between key and value, # and ! comments, a trailing backslash continuing
// a line, \t \n \r \f \uXXXX escapes, and ${name} replaced by the value of
// another property of the same file (left as written when there is none),
// as git2consul did.
func parseProperties(file string, data []byte) ([]leaf, error) {
	type prop struct{ key, value string }
	var props []prop
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimLeft(lines[i], " \t\f")
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		// A logical line: odd trailing backslashes continue it.
		for continued(line) && i+1 < len(lines) {
			i++
			line = line[:len(line)-1] + strings.TrimLeft(lines[i], " \t\f")
		}
		if continued(line) {
			line = line[:len(line)-1]
		}
		k, v := splitProperty(line)
		key, col, err := unescapeProperty(k)
		if err != nil {
			return nil, &ParseError{File: file, Line: lineNo, Column: col + 1, Msg: err.Error()}
		}
		value, vcol, err := unescapeProperty(v)
		if err != nil {
			return nil, &ParseError{File: file, Line: lineNo, Column: len(line) - len(v) + vcol + 1, Msg: err.Error()}
		}
		props = append(props, prop{key, value})
	}
	vars := make(map[string]string, len(props))
	for _, p := range props {
		vars[p.key] = p.value
	}
	out := make([]leaf, 0, len(props))
	seen := map[string]int{}
	for _, p := range props {
		if p.key == "" {
			continue
		}
		v := substitute(p.value, vars)
		if j, ok := seen[p.key]; ok { // the last one wins, as in Java
			out[j].value = []byte(v)
			continue
		}
		seen[p.key] = len(out)
		out = append(out, leaf{path: escapeSegment(p.key), value: []byte(v)})
	}
	return out, nil
}

func continued(line string) bool {
	n := 0
	for i := len(line) - 1; i >= 0 && line[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// splitProperty splits a logical line at the first unescaped separator.
func splitProperty(line string) (key, value string) {
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case '=', ':':
			return line[:i], strings.TrimLeft(line[i+1:], " \t\f")
		case ' ', '\t', '\f':
			rest := strings.TrimLeft(line[i:], " \t\f")
			if rest != "" && (rest[0] == '=' || rest[0] == ':') {
				rest = strings.TrimLeft(rest[1:], " \t\f")
			}
			return line[:i], rest
		}
	}
	return line, ""
}

// unescapeProperty resolves escapes; on error it returns the offending
// byte offset.
func unescapeProperty(s string) (string, int, error) {
	if !strings.Contains(s, `\`) {
		return s, 0, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", i - 1, errBadUnicode(s[i-1:])
			}
			r, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
			if err != nil {
				return "", i - 1, errBadUnicode(s[i-1 : i+5])
			}
			b.WriteRune(rune(r))
			i += 4
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), 0, nil
}

type errBadUnicode string

func (e errBadUnicode) Error() string { return "bad unicode escape " + strconv.Quote(string(e)) }

var varRef = regexp.MustCompile(`\$\{([^}]+)\}`)

func substitute(v string, vars map[string]string) string {
	if !strings.Contains(v, "${") {
		return v
	}
	return varRef.ReplaceAllStringFunc(v, func(m string) string {
		if r, ok := vars[m[2:len(m)-1]]; ok {
			return r
		}
		return m
	})
}
