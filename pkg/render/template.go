package render

import (
	"bytes"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
)

// TemplateOptions describe one template.
type TemplateOptions struct {
	Name                  string // the source file, named in errors
	Text                  string // the template itself
	LeftDelim, RightDelim string // default {{ and }}
	ErrMissingKey         bool   // a missing map key is an error, not the zero value
	SandboxPath           string // file() may only read under this directory
	Env                   []string
	FunctionDenylist      []string // functions that fail when called
}

// Template is a parsed template, executed against a Brain each pass: the
// parse tree is kept, and each execution runs a clone with the data
// functions bound to that execution.
type Template struct {
	o      TemplateOptions
	parsed *template.Template
}

// Result is one execution: the output, the dependencies the template used,
// and those it still misses (the output must not be written while any is
// missing).
type Result struct {
	Output  []byte
	Used    []Dep
	Missing []Dep
}

// ParseError is a template that does not parse, with where.
type ParseError struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *ParseError) Error() string {
	if e.Column > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// NewTemplate parses o.Text once, so an error (an unknown function
// included) is found before anything runs.
func NewTemplate(o TemplateOptions) (*Template, error) {
	t := &Template{o: o}
	parsed, err := t.parse(NewBrain(), &deps{})
	if err != nil {
		return nil, err
	}
	t.parsed = parsed
	return t, nil
}

// Name is the template's source name.
func (t *Template) Name() string { return t.o.Name }

var parseErr = regexp.MustCompile(`^template: [^:]*:(\d+):(?:(\d+):)? ?(.*)$`)
var undefined = regexp.MustCompile(`function "([^"]+)" not defined`)

// staticFuncs are the functions that hold no per-execution state, built
// once.
var staticFuncs = sync.OnceValue(func() template.FuncMap {
	funcs := sprigFuncs()
	maps.Copy(funcs, Helpers())
	funcs["timestamp"] = timestamp
	funcs["plugin"] = plugin
	funcs["writeToFile"] = writeToFile
	funcs["byKey"], funcs["byTag"], funcs["byMeta"], funcs["explode"] = byKey, byTag, byMeta, explode
	return funcs
})

// boundFuncs are the functions bound to one execution: data functions
// reading b and recording into s, a fresh scratch, executeTemplate on tmpl.
func (t *Template) boundFuncs(tmpl *template.Template, b *Brain, s *deps) template.FuncMap {
	funcs := dataFuncs(b, s, t.o.SandboxPath)
	maps.Copy(funcs, envFuncs(t.o.Env))
	sc := &Scratch{}
	funcs["scratch"] = func() *Scratch { return sc }
	funcs["executeTemplate"] = executeTemplateFunc(tmpl)
	for _, name := range t.o.FunctionDenylist {
		funcs[name] = func(...any) (string, error) {
			return "", fmt.Errorf("function %q is denied by the function denylist", name)
		}
	}
	return funcs
}

func (t *Template) parse(b *Brain, s *deps) (*template.Template, error) {
	tmpl := template.New(t.o.Name).Delims(t.o.LeftDelim, t.o.RightDelim)
	tmpl.Funcs(staticFuncs()).Funcs(t.boundFuncs(tmpl, b, s))
	if t.o.ErrMissingKey {
		tmpl.Option("missingkey=error")
	} else {
		tmpl.Option("missingkey=zero")
	}
	if _, err := tmpl.Parse(t.o.Text); err != nil {
		return nil, t.parseError(err)
	}
	return tmpl, nil
}

// parseError gives text/template's error the file, line and column: the
// column of an undefined function's name, else of the line's first action.
func (t *Template) parseError(err error) error {
	m := parseErr.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("%s: %w", t.o.Name, err)
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	lines := strings.Split(t.o.Text, "\n")
	if col == 0 && line >= 1 && line <= len(lines) {
		text := lines[line-1]
		if u := undefined.FindStringSubmatch(m[3]); u != nil {
			col = strings.Index(text, u[1]) + 1
		}
		if col == 0 {
			left := t.o.LeftDelim
			if left == "" {
				left = "{{"
			}
			col = strings.Index(text, left) + 1
		}
	}
	msg := m[3]
	if u := undefined.FindStringSubmatch(msg); u != nil {
		msg = fmt.Sprintf("unknown function %q", u[1])
	}
	return &ParseError{File: t.o.Name, Line: line, Column: col, Msg: msg}
}

// Execute runs the template against b.
func (t *Template) Execute(b *Brain) (Result, error) {
	s := &deps{}
	tmpl, err := t.parsed.Clone()
	if err != nil {
		return Result{}, fmt.Errorf("execute %s: %w", t.o.Name, err)
	}
	tmpl.Funcs(t.boundFuncs(tmpl, b, s))
	var out bytes.Buffer
	if err := tmpl.Execute(&out, nil); err != nil {
		return Result{}, fmt.Errorf("execute %s: %w", t.o.Name, err)
	}
	return Result{Output: out.Bytes(), Used: s.used, Missing: s.missing}, nil
}
