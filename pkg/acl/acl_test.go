package acl

import (
	"strings"
	"testing"
)

func mustParse(t *testing.T, rules string) *Policy {
	t.Helper()
	p, err := Parse(rules)
	if err != nil {
		t.Fatalf("Parse(%q): %v", rules, err)
	}
	return p
}

func TestParseHCLAndJSONAgree(t *testing.T) {
	hcl := `
key_prefix "" { policy = "read" }
key "a/b" { policy = "write" }
key_prefix "a/" { policy = "list" }
service_prefix "" { policy = "read" intentions = "read" }
service "web" { policy = "write" }
node "n1" { policy = "write" }
node_prefix "" { policy = "deny" }
session_prefix "" { policy = "write" }
event "deploy" { policy = "write" }
agent_prefix "" { policy = "read" }
operator = "read"
acl = "deny"
query_prefix "" { policy = "read" }
keyring = "read"
`
	json := `{
 "key_prefix": {"": {"policy": "read"}, "a/": {"policy": "list"}},
 "key": {"a/b": {"policy": "write"}},
 "service_prefix": {"": {"policy": "read", "intentions": "read"}},
 "service": [{"web": {"policy": "write"}}],
 "node": {"n1": {"policy": "write"}},
 "node_prefix": {"": {"policy": "deny"}},
 "session_prefix": {"": {"policy": "write"}},
 "event": {"deploy": {"policy": "write"}},
 "agent_prefix": {"": {"policy": "read"}},
 "operator": "read",
 "acl": "deny",
 "query_prefix": {"": {"policy": "read"}}
}`
	for name, src := range map[string]string{"hcl": hcl, "json": json} {
		p := mustParse(t, src)
		if len(p.Rules) != 10 || p.Operator != AccessRead || p.ACL != AccessDeny {
			t.Fatalf("%s: %d rules %+v, operator %v, acl %v", name, len(p.Rules), p.Rules, p.Operator, p.ACL)
		}
		a := New(false, p)
		checks := []struct {
			got  bool
			want bool
			what string
		}{
			{a.KeyRead("x"), true, "read x"},
			{a.KeyWrite("x"), false, "write x"},
			{a.KeyWrite("a/b"), true, "write a/b"},
			{a.KeyList("a/c"), true, "list a/c"},
			{a.KeyList("x"), false, "list x"},
			{a.ServiceWrite("web"), true, "write web"},
			{a.ServiceWrite("db"), false, "write db"},
			{a.ServiceRead("db"), true, "read db"},
			{a.NodeWrite("n1"), true, "write n1"},
			{a.NodeRead("n2"), false, "read n2"},
			{a.SessionWrite("n2"), true, "session n2"},
			{a.EventWrite("deploy"), true, "event deploy"},
			{a.EventRead("other"), false, "event other"},
			{a.AgentRead("n1"), true, "agent read"},
			{a.AgentWrite("n1"), false, "agent write"},
			{a.OperatorRead(), true, "operator read"},
			{a.OperatorWrite(), false, "operator write"},
			{a.ACLRead(), false, "acl read"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s: %s = %v, want %v", name, c.what, c.got, c.want)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for src, want := range map[string]string{
		`key "a" { policy = "lsit" }`:     `line 1: key "a" policy: invalid policy "lsit"`,
		`service "a" { policy = "list" }`: `invalid policy "list" (want read, write or deny)`,
		`kee "a" { policy = "read" }`:     `unknown rule kind "kee"`,
		`key "a" { polcy = "read" }`:      `want key "NAME" { policy = "LEVEL" }`,
		`key "a" {}`:                      `want key "NAME"`,
		`operator = "list"`:               `operator: invalid level "list"`,
		`key "a" { policy = `:             `rules:`,
		`{"key": {"a": {"policy": 3}}}`:   `is not a string`,
		"key \"a\" {\n policy = \"read\"\n}\nkey \"b\" { policy = \"x\" }": `line 4`,
	} {
		_, err := Parse(src)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", src, err, want)
		}
	}
	if p, err := Parse("  \n"); err != nil || len(p.Rules) != 0 {
		t.Errorf("empty rules: %v %v", p, err)
	}
}

func TestLongestPrefixExactAndDeny(t *testing.T) {
	a := New(false, mustParse(t, `
key_prefix "" { policy = "read" }
key_prefix "app/" { policy = "write" }
key_prefix "app/secret/" { policy = "deny" }
key "app/secret/open" { policy = "read" }
key "app/fixed" { policy = "read" }
`))
	for key, want := range map[string][2]bool{ // read, write
		"other":             {true, false},
		"app/x":             {true, true},
		"app/":              {true, true},
		"app":               {true, false},
		"app/secret/x":      {false, false},
		"app/secret/open":   {true, false}, // exact beats prefix
		"app/secret/open/x": {false, false},
		"app/fixed":         {true, false}, // exact read beats the write prefix
	} {
		if got := [2]bool{a.KeyRead(key), a.KeyWrite(key)}; got != want {
			t.Errorf("%q: read,write = %v, want %v", key, got, want)
		}
	}
	// Two policies on the same prefix: deny wins over write; write over read.
	b := New(false, mustParse(t, `key_prefix "k/" { policy = "write" }`), mustParse(t, `key_prefix "k/" { policy = "deny" }`))
	if b.KeyRead("k/a") || b.KeyWrite("k/a") {
		t.Error("deny at equal length did not win over write")
	}
	c := New(false, mustParse(t, `key_prefix "k/" { policy = "read" }`), mustParse(t, `key_prefix "k/" { policy = "write" }`))
	if !c.KeyWrite("k/a") {
		t.Error("write and read on one prefix did not merge to write")
	}
	// A longer prefix wins over deny on a shorter one.
	d := New(false, mustParse(t, `key_prefix "" { policy = "deny" }
key_prefix "k/mine/" { policy = "write" }`))
	if !d.KeyWrite("k/mine/a") || d.KeyRead("k/other") {
		t.Error("longest prefix did not win")
	}
}

func TestDefaults(t *testing.T) {
	allow := New(true, mustParse(t, `key_prefix "ro/" { policy = "read" }`))
	if !allow.KeyWrite("x") || allow.KeyWrite("ro/x") || !allow.ServiceWrite("web") || !allow.OperatorWrite() {
		t.Error("default allow: unmatched names must be allowed, matched ones follow their rule")
	}
	if allow.ACLRead() || allow.ACLWrite() {
		t.Error("default allow must not grant acl")
	}
	deny := New(false)
	if deny.KeyRead("x") || deny.NodeRead("n") || deny.OperatorRead() {
		t.Error("default deny with no rules allowed something")
	}
	m := Manage()
	if !m.KeyWritePrefix("") || !m.ACLWrite() || !m.IsManagement() {
		t.Error("management must allow everything")
	}
	gm := New(false, mustParse(t, ManagementRules))
	if !gm.IsManagement() || !gm.KeyWritePrefix("") || !gm.NodeWrite("x") {
		t.Error("the global-management rules must allow everything")
	}
}

func TestKeyWritePrefix(t *testing.T) {
	a := New(false, mustParse(t, `
key_prefix "app/" { policy = "write" }
key "app/locked" { policy = "read" }
key_prefix "other/" { policy = "write" }
`))
	if a.KeyWritePrefix("app/") {
		t.Error("a read rule under the prefix must refuse a recursive write")
	}
	if !a.KeyWritePrefix("other/") || !a.KeyWritePrefix("app/x/") {
		t.Error("write everywhere under the prefix must allow it")
	}
	if a.KeyWritePrefix("") {
		t.Error(`the root is not writable`)
	}
}

func TestNodeReadAll(t *testing.T) {
	if !New(false, mustParse(t, `node_prefix "" { policy = "read" }`)).NodeReadAll() {
		t.Error("node_prefix read must read all")
	}
	if New(false, mustParse(t, `node_prefix "" { policy = "read" }
node "x" { policy = "deny" }`)).NodeReadAll() {
		t.Error("one denied node must refuse all")
	}
}
