package acl

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"
)

// Access is a rule's level. The zero value is "no rule".
type Access uint8

// The levels, in the order a merge of two rules on one name prefers them:
// deny over write over list over read.
const (
	AccessNone Access = iota
	AccessRead
	AccessList
	AccessWrite
	AccessDeny
)

func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessList:
		return "list"
	case AccessWrite:
		return "write"
	case AccessDeny:
		return "deny"
	}
	return ""
}

func parseAccess(s string, allowList bool) (Access, bool) {
	switch s {
	case "read":
		return AccessRead, true
	case "write":
		return AccessWrite, true
	case "deny":
		return AccessDeny, true
	case "list":
		return AccessList, allowList
	}
	return AccessNone, false
}

// merge returns the level two rules on one name give: deny wins, then the
// stronger grant.
func merge(a, b Access) Access { return max(a, b) }

// Resource is a segmented resource kind.
type Resource string

// The segmented resources.
const (
	Key     Resource = "key"
	Service Resource = "service"
	Node    Resource = "node"
	Session Resource = "session"
	Event   Resource = "event"
	Agent   Resource = "agent"
)

// Resources lists the segmented resources.
var Resources = []Resource{Key, Service, Node, Session, Event, Agent}

// Rule is one rule on a name or a prefix of a segmented resource.
type Rule struct {
	Resource Resource
	Name     string
	Prefix   bool
	Access   Access
}

// Policy is a parsed set of rules.
type Policy struct {
	Rules    []Rule
	Operator Access
	ACL      Access
}

// ignored are Consul's rule kinds that kvx has nothing to apply to.
var ignored = []string{
	"query", "query_prefix", "keyring", "mesh", "peering", "partition",
	"partition_prefix", "namespace", "namespace_prefix", "identity", "identity_prefix",
	"intention", "intentions", "plugin", "plugin_prefix",
}

// leaf is one literal of the rules with the keys that lead to it.
type leaf struct {
	path []string
	val  string
	pos  token.Pos
}

// Parse parses rules in Consul's HCL or JSON syntax. An empty string is a
// policy with no rules. Errors name the rule and where it is.
func Parse(rules string) (p *Policy, err error) {
	defer func() { // hcl's token decoding panics on some malformed literals
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("rules: %v", r)
		}
	}()
	p = &Policy{}
	if strings.TrimSpace(rules) == "" {
		return p, nil
	}
	f, err := hcl.ParseString(rules)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	list, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("rules: not an object")
	}
	var leaves []leaf
	if err := collect(list, nil, &leaves); err != nil {
		return nil, err
	}
	for _, l := range leaves {
		if err := p.add(l); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// collect flattens the tree into leaves: `key "a" { policy = "read" }`,
// its JSON form and the JSON list form all give [key a policy] = read.
func collect(list *ast.ObjectList, path []string, out *[]leaf) error {
	for _, item := range list.Items {
		p := slices.Clone(path)
		for _, k := range item.Keys {
			s, err := text(k.Token)
			if err != nil {
				return err
			}
			p = append(p, s)
		}
		if err := collectNode(item.Val, p, out); err != nil {
			return err
		}
	}
	return nil
}

func collectNode(n ast.Node, path []string, out *[]leaf) error {
	switch v := n.(type) {
	case *ast.ObjectType:
		if len(v.List.Items) == 0 {
			*out = append(*out, leaf{path: path, pos: v.Lbrace}) // an empty block: a rule without a level
			return nil
		}
		return collect(v.List, path, out)
	case *ast.ListType:
		for _, e := range v.List {
			if err := collectNode(e, path, out); err != nil {
				return err
			}
		}
		return nil
	case *ast.LiteralType:
		s, err := text(v.Token)
		if err != nil {
			return err
		}
		*out = append(*out, leaf{path: path, val: s, pos: v.Token.Pos})
		return nil
	}
	return fmt.Errorf("rules: %s: unexpected %T", strings.Join(path, " "), n)
}

func text(t token.Token) (string, error) {
	switch t.Type {
	case token.STRING, token.IDENT, token.HEREDOC:
		s, _ := t.Value().(string)
		return s, nil
	}
	return "", fmt.Errorf("rules: line %d: %s is not a string", t.Pos.Line, t.Text)
}

func (p *Policy) add(l leaf) error {
	where := func() string {
		return fmt.Sprintf("rules: line %d: %s", l.pos.Line, strings.Join(quoteNames(l.path), " "))
	}
	kind := l.path[0]
	if slices.Contains(ignored, kind) {
		return nil
	}
	switch kind {
	case "operator", "acl":
		if len(l.path) != 1 {
			return fmt.Errorf("%s: want %s = \"read\", \"write\" or \"deny\"", where(), kind)
		}
		a, ok := parseAccess(l.val, false)
		if !ok {
			return fmt.Errorf("%s: invalid level %q (want read, write or deny)", where(), l.val)
		}
		if kind == "operator" {
			p.Operator = merge(p.Operator, a)
		} else {
			p.ACL = merge(p.ACL, a)
		}
		return nil
	}
	res, prefix := Resource(strings.TrimSuffix(kind, "_prefix")), strings.HasSuffix(kind, "_prefix")
	if !slices.Contains(Resources, res) {
		return fmt.Errorf("%s: unknown rule kind %q", where(), kind)
	}
	if len(l.path) == 3 && l.path[2] == "intentions" && res == Service {
		return nil // service intentions: Connect, which kvx does not serve
	}
	if len(l.path) != 3 || l.path[2] != "policy" {
		return fmt.Errorf("%s: want %s \"NAME\" { policy = \"LEVEL\" }", where(), kind)
	}
	a, ok := parseAccess(l.val, res == Key)
	if !ok {
		levels := "read, write or deny"
		if res == Key {
			levels = "read, list, write or deny"
		}
		return fmt.Errorf("%s: invalid policy %q (want %s)", where(), l.val, levels)
	}
	p.Rules = append(p.Rules, Rule{Resource: res, Name: l.path[1], Prefix: prefix, Access: a})
	return nil
}

func quoteNames(path []string) []string {
	out := slices.Clone(path)
	if len(out) > 1 {
		out[1] = fmt.Sprintf("%q", out[1])
	}
	return out
}
