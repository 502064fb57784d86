package server

import (
	"encoding/json"
	"slices"
	"testing"
)

// FuzzPlainStrings: the fast parser of X-Kvx-Read agrees with
// encoding/json whenever it takes an input, and takes what kvx out sends.
func FuzzPlainStrings(f *testing.F) {
	for _, seed := range []string{`["a","b/c"]`, ` [ "x" , "y" ] `, `[]`, `["a",]`, `["a\"b"]`, `["é"]`, `["a"`, `[,"a"]`, `["a" "b"]`, `[1]`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := plainStrings(in)
		if !ok {
			return
		}
		var want []string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatalf("%q: fast parser took %q, encoding/json refuses: %v", in, got, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q: fast parser %q, encoding/json %q", in, got, want)
		}
	})
}

func TestPlainStringsTakesWhatKvxOutSends(t *testing.T) {
	keys := []string{"kvx/app/hosts/checksum", "kvx/app/hosts/stop", "kvx/locks/web-1/etc/hosts", "kvx/app/hosts/nodes/web-1"}
	b, _ := json.Marshal(keys)
	got, ok := plainStrings(string(b))
	if !ok || !slices.Equal(got, keys) {
		t.Fatalf("%s: %q %v", b, got, ok)
	}
	if got, ok := plainStrings(`["a",]`); ok {
		t.Fatalf("a trailing comma taken: %q", got)
	}
}
