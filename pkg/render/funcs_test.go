package render

import (
	"strings"
	"testing"
	"text/template"
)

func execHelpers(t *testing.T, src string) (string, error) {
	t.Helper()
	tmpl, err := template.New("t").Funcs(Helpers()).Parse(src)
	if err != nil {
		t.Fatalf("parse %q: %v", src, err)
	}
	var b strings.Builder
	err = tmpl.Execute(&b, nil)
	return b.String(), err
}

// The expected outputs are consul-template 0.42's, worked out by hand from
// its documentation and function definitions (digests from their standard
// test vectors).
func TestHelpers(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		// strings
		{`{{ "Hello" | toLower }} {{ "Hello" | toUpper }} {{ "hello wORLD" | toTitle }}`, "hello HELLO Hello WORLD"},
		{`{{ "xxhixx" | trim "x" }}|{{ "prefix-x" | trimPrefix "prefix-" }}|{{ "x.conf" | trimSuffix ".conf" }}|{{ "  a b  " | trimSpace }}`, "hi|x|x|a b"},
		{`{{ "a,b,c" | split "," | join ";" }}`, "a;b;c"},
		{`{{ "   " | split "," | len }}`, "0"},
		{`{{ " a:b " | split ":" | len }}`, "2"},
		{`{{ "x=1&y=2&z" | splitToMap "&" "=" }}`, "map[x:1 y:2]"},
		{`{{ "foo" | replaceAll "o" "0" }}`, "f00"},
		{`{{ "a-b-c" | regexReplaceAll "-(.)" "_$1" }}`, "a_b_c"},
		{`{{ "abc" | regexMatch "^a.c$" }} {{ "abd" | regexMatch "^a.c$" }}`, "true false"},
		{"{{ \"a\\n\\nb\\n\" | indent 2 }}", "  a\n\n  b\n"},
		{`{{ "x" | indent 0 }}`, "x"},
		// encodings and digests
		{`{{ "hello" | base64Encode }} {{ "aGVsbG8=" | base64Decode }}`, "aGVsbG8= hello"},
		{`{{ "hi?>" | base64URLEncode }} {{ "aGk_Pg==" | base64URLDecode }}`, "aGk_Pg== hi?>"},
		{`{{ "hello" | sha256Hex }}`, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"},
		{`{{ "hello" | md5sum }}`, "5d41402abc4b2a76b9719d911017c592"},
		{`{{ hmacSHA256Hex "The quick brown fox jumps over the lazy dog" "key" }}`, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"},
		// parsing: "" is the zero value
		{`{{ "" | parseInt }} {{ "" | parseBool }} {{ "" | parseFloat }} {{ "" | parseUint }}`, "0 false 0 0"},
		{`{{ "42" | parseInt | add 1 }} {{ "true" | parseBool }} {{ "1.5" | parseFloat }} {{ "7" | parseUint }}`, "43 true 1.5 7"},
		{`{{ $m := parseJSON "{\"a\":{\"b\":[1,2]}}" }}{{ index $m.a.b 1 }}`, "2"},
		{`{{ $m := parseYAML "a:\n  b: [x, z]\n" }}{{ index (index $m "a") "b" }}`, "[x z]"},
		{`{{ parseYAML "[y, no]" }}`, "[true false]"}, // YAML 1.1 (yaml.v2), as consul-template reads it
		{`{{ "" | parseJSON | len }}`, "0"},
		// formatting
		{`{{ parseJSON "{\"b\":1,\"a\":[1,2]}" | toJSON }}`, `{"a":[1,2],"b":1}`},
		{`{{ parseJSON "{\"a\":1}" | toJSONPretty }}`, "{\n  \"a\": 1\n}"},
		{`{{ "<&>" | toJSON }} {{ "<&>" | toUnescapedJSON }}`, `"\u003c\u0026\u003e" "<&>"`},
		{`{{ parseJSON "{\"a\":[\"<\"]}" | toUnescapedJSONPretty }}`, "{\n  \"a\": [\n    \"<\"\n  ]\n}"},
		{`{{ parseJSON "{\"b\":1,\"a\":[1,2]}" | toYAML }}`, "a:\n- 1\n- 2\nb: 1"},
		{`{{ parseJSON "{\"b\":\"x\",\"a\":1}" | toTOML }}`, "a = 1.0\nb = \"x\""},
		// arithmetic: the piped value is the left operand
		{`{{ 5 | add 2 }} {{ 10 | subtract 3 }} {{ 4 | multiply 3 }} {{ 10 | divide 4 }} {{ 10 | modulo 3 }}`, "7 7 12 2 1"},
		{`{{ 10.0 | divide 4 }} {{ 4 | multiply 2.5 }} {{ 1 | add 0.5 }}`, "2.5 10 1.5"},
		{`{{ 3 | minimum 5 }} {{ 3 | maximum 5 }} {{ 1.5 | minimum 2 }} {{ 2 | maximum 2.0 }}`, "3 5 1.5 2"},
		{`{{ "7" | parseUint | add ("3" | parseUint) }}`, "10"},
		// collections
		{`{{ "abc" | contains "b" }} {{ "abc" | contains "x" }}`, "true false"},
		{`{{ $l := parseJSON "[\"a\",\"b\"]" }}{{ $l | contains "a" }} {{ in $l "c" }}`, "true false"},
		{`{{ $l := parseJSON "[1,2]" }}{{ $l | contains 1 }} {{ $l | contains 1.0 }}`, "false true"}, // JSON numbers are floats
		{`{{ $l := parseJSON "[\"a\",\"b\",\"c\"]" }}{{ $w := parseJSON "[\"a\",\"z\"]" }}{{ $l | containsAll $w }} {{ $l | containsAny $w }} {{ $l | containsNone $w }} {{ $l | containsNotAll $w }}`, "false true false true"},
		{`{{ $l := parseJSON "[\"a\",\"b\"]" }}{{ $w := parseJSON "[]" }}{{ $l | containsAll $w }} {{ $l | containsAny $w }}`, "true false"},
		{`{{ explodeMap (parseJSON "{\"a/b\":1,\"a/c\":2,\"d\":3,\"e/\":4}") | toJSON }}`, `{"a":{"b":1,"c":2},"d":3,"e":{}}`},
		{`{{ range loop 3 }}{{ . }},{{ end }}`, "0,1,2,"},
		{`{{ range $i := loop 5 8 }}{{ $i }} {{ end }}`, "5 6 7 "},
		{`{{ range loop "2" }}{{ . }}{{ end }}|{{ range loop 3 1 }}x{{ end }}`, "01|"},
	} {
		got, err := execHelpers(t, tc.src)
		if err != nil || got != tc.want {
			t.Errorf("%s\n got %q, %v\nwant %q", tc.src, got, err, tc.want)
		}
	}
}

// TestHelperErrors: bad input is an error naming the function, never a
// silent empty string.
func TestHelperErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`{{ "abc" | parseInt }}`, "parseInt"},
		{`{{ "maybe" | parseBool }}`, "parseBool"},
		{`{{ "-1" | parseUint }}`, "parseUint"},
		{`{{ "x" | parseFloat }}`, "parseFloat"},
		{`{{ "{" | parseJSON }}`, "parseJSON"},
		{`{{ "a: [" | parseYAML }}`, "parseYAML"},
		{`{{ "!!" | base64Decode }}`, "base64Decode"},
		{`{{ "!!" | base64URLDecode }}`, "base64URLDecode"},
		{`{{ "x" | regexMatch "(" }}`, "regexMatch"},
		{`{{ "x" | regexReplaceAll "(" "" }}`, "regexReplaceAll"},
		{`{{ "x" | indent -1 }}`, "indent"},
		{`{{ 1 | divide 0 }}`, "division by zero"},
		{`{{ 1 | modulo 0 }}`, "division by zero"},
		{`{{ 1.5 | modulo 2 }}`, "want integers"},
		{`{{ "a" | add 1 }}`, "add: a (string) is not a number"},
		{`{{ explodeMap (parseJSON "{\"a\":1,\"a/b\":2}") }}`, "not a map"},
		{`{{ range loop 1 2 3 }}{{ end }}`, "loop: 3 arguments"},
		{`{{ range loop 1.5 }}{{ end }}`, "loop: bad argument type"},
	} {
		if got, err := execHelpers(t, tc.src); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %q, %v; want an error with %q", tc.src, got, err, tc.want)
		}
	}
	// An unknown function is a parse error, not an empty string.
	if _, err := template.New("t").Funcs(Helpers()).Parse(`{{ nosuchfunc "x" }}`); err == nil || !strings.Contains(err.Error(), `"nosuchfunc" not defined`) {
		t.Errorf("unknown function: %v", err)
	}
}
