package acl

import "testing"

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`key_prefix "" { policy = "read" }`,
		`{"key": {"a": {"policy": "write"}}, "operator": "read"}`,
		`service "web" { policy = "write" intentions = "read" }`,
		`node_prefix "" { policy = "deny" } acl = "write"`,
		`key "a" { policy = 1.5e400 }`,
		`key "\xff" { policy = "read" }`,
		"key <<EOF\nx\nEOF",
		`{"key": [{"a": {"policy": "list"}}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rules string) {
		p, err := Parse(rules)
		if err != nil {
			if p != nil {
				t.Fatal("an error came with a policy")
			}
			return
		}
		a := New(false, p)
		for _, r := range p.Rules {
			if r.Access < AccessRead || r.Access > AccessDeny {
				t.Fatalf("rule with level %d", r.Access)
			}
			_ = a.KeyWritePrefix(r.Name)
		}
		if len(p.Rules) == 1 { // one rule decides its own name as its level says
			r := p.Rules[0]
			if got, want := a.Allowed(r.Resource, r.Name, AccessRead), r.Access != AccessDeny; got != want {
				t.Fatalf("rule %+v: read %v, want %v", r, got, want)
			}
			if got, want := a.Allowed(r.Resource, r.Name, AccessWrite), r.Access == AccessWrite; got != want {
				t.Fatalf("rule %+v: write %v, want %v", r, got, want)
			}
		}
		p2, err := Parse(rules)
		if err != nil || len(p2.Rules) != len(p.Rules) {
			t.Fatal("parse is not deterministic")
		}
	})
}
