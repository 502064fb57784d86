package acl

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkKeyRead: one decision of a node token's policy (3 rules) and of
// a policy of 1,000 rules.
func BenchmarkKeyRead(b *testing.B) {
	small := New(false, mustParseB(b, `key_prefix "kvx/hosts/" { policy = "read" }
key "kvx/hosts/nodes/web-1" { policy = "write" }
key_prefix "kvx/locks/" { policy = "read" }`))
	var big strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&big, "key_prefix \"app/%04d/\" { policy = \"write\" }\n", i)
	}
	large := New(false, mustParseB(b, big.String()))
	b.Run("3-rules", func(b *testing.B) {
		for b.Loop() {
			if !small.KeyRead("kvx/hosts/data") {
				b.Fatal("denied")
			}
		}
	})
	b.Run("1000-rules", func(b *testing.B) {
		for b.Loop() {
			if !large.KeyRead("app/0500/some/key") {
				b.Fatal("denied")
			}
		}
	})
}

func mustParseB(b *testing.B, rules string) *Policy {
	p, err := Parse(rules)
	if err != nil {
		b.Fatal(err)
	}
	return p
}
