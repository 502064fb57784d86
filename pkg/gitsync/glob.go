package gitsync

import (
	"path"
	"strings"
)

// matchGlob matches name (a slash-separated path) against pattern: "*",
// "?" and [classes] within one segment as path.Match, "**" for any number
// of segments. A pattern without a slash matches the last segment at any
// depth, as in .gitignore.
func matchGlob(pattern, name string) (bool, error) {
	if _, err := path.Match(strings.ReplaceAll(pattern, "**", "*"), ""); err != nil {
		return false, err
	}
	if !strings.Contains(pattern, "/") {
		return path.Match(pattern, path.Base(name))
	}
	return matchSegments(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchSegments(pat, name []string) (bool, error) {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if ok, err := matchSegments(pat[1:], name[i:]); ok || err != nil {
					return ok, err
				}
			}
			return false, nil
		}
		if len(name) == 0 {
			return false, nil
		}
		if ok, err := path.Match(pat[0], name[0]); !ok || err != nil {
			return false, err
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0, nil
}

// anyGlob reports whether name matches one of patterns (checked by
// Config.Check, so errors cannot happen here).
func anyGlob(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := matchGlob(p, name); ok {
			return true
		}
	}
	return false
}
