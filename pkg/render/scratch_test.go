package render

import (
	"strings"
	"testing"
	"text/template"
)

// TestScratch: consul-template's scratch pad, in a template, one per render.
func TestScratch(t *testing.T) {
	render := func(src string) (string, error) {
		s := &Scratch{}
		tmpl, err := template.New("t").Funcs(Helpers()).Funcs(template.FuncMap{"scratch": func() *Scratch { return s }}).Parse(src)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		var b strings.Builder
		err = tmpl.Execute(&b, nil)
		return b.String(), err
	}
	for _, tc := range []struct{ src, want string }{
		{`{{ scratch.Set "a" 1 }}{{ scratch.Get "a" }}|{{ scratch.Key "a" }} {{ scratch.Key "b" }}`, "1|true false"},
		{`{{ scratch.Set "a" 1 }}{{ scratch.SetX "a" 2 }}{{ scratch.Get "a" }}{{ scratch.Set "a" 3 }}{{ scratch.Get "a" }}`, "13"},
		{`{{ scratch.SetX "n" "x" }}{{ scratch.Get "n" }}|{{ scratch.Get "unset" }}`, "x|<no value>"},
		{`{{ scratch.MapSet "m" "b" 2 }}{{ scratch.MapSet "m" "a" 1 }}{{ scratch.MapSetX "m" "a" 9 }}{{ scratch.MapSet "m" "c" 3 }}{{ scratch.MapValues "m" }}`, "[1 2 3]"},
		{`{{ scratch.MapValues "none" | len }}|{{ scratch.Set "s" "x" }}{{ scratch.MapValues "s" | len }}`, "0|0"},
		{`{{ range $i := loop 3 }}{{ scratch.MapSet "sq" (print $i) (multiply $i $i) }}{{ end }}{{ scratch.MapValues "sq" }}`, "[0 1 4]"},
	} {
		if got, err := render(tc.src); err != nil || got != tc.want {
			t.Errorf("%s\n got %q, %v\nwant %q", tc.src, got, err, tc.want)
		}
	}
	if _, err := render(`{{ scratch.Set "s" 1 }}{{ scratch.MapSet "s" "k" 2 }}`); err == nil || !strings.Contains(err.Error(), `"s" is not a map`) {
		t.Errorf("MapSet on a value: %v", err)
	}
}
