package server_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// denied asserts that err is Consul's 403.
func denied(t *testing.T, what string, err error) {
	t.Helper()
	var se consulapi.StatusError
	switch {
	case errors.As(err, &se) && se.Code == http.StatusForbidden:
	case err != nil && strings.Contains(err.Error(), "Permission denied"): // the txn client's own error
	case err != nil && strings.Contains(err.Error(), "response code: 403"): // session renew's
	default:
		t.Fatalf("%s: %v, want 403", what, err)
	}
}

func TestACLDisabledAnswers401(t *testing.T) {
	srv := servertest.Start(t)
	_, _, err := srv.Client.ACL().Bootstrap()
	var se consulapi.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || !strings.Contains(se.Body, "ACL support disabled") {
		t.Fatalf("bootstrap without ACLs: %v, want 401 ACL support disabled", err)
	}
	mustPut(t, srv.Client.KV(), "open", "1") // and nothing else changed
}

func TestACLBootstrapOnce(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, secret := srv.Bootstrap(t)
	if len(secret) != 36 {
		t.Fatalf("bootstrap SecretID %q", secret)
	}
	_, _, err := srv.Client.ACL().Bootstrap()
	denied(t, "second bootstrap", err)
	if !strings.Contains(err.Error(), "ACL bootstrap no longer allowed") {
		t.Fatalf("second bootstrap: %v", err)
	}
	// The anonymous token can do nothing under default deny.
	_, err = srv.Client.KV().Put(&consulapi.KVPair{Key: "a", Value: []byte("x")}, nil)
	denied(t, "anonymous put", err)
	_, _, err = srv.Client.KV().Get("a", nil)
	denied(t, "anonymous get", err)
	mustPut(t, mgmt.KV(), "a", "x")
	self, _, err := mgmt.ACL().TokenReadSelf(nil)
	if err != nil || self.SecretID != secret || len(self.Policies) != 1 || self.Policies[0].Name != "global-management" {
		t.Fatalf("token self: %+v %v", self, err)
	}
	// With hashed secrets, a token read back has no SecretID.
	read, _, err := mgmt.ACL().TokenRead(self.AccessorID, nil)
	if err != nil || read.SecretID != "" || read.AccessorID != self.AccessorID {
		t.Fatalf("token read: %+v %v", read, err)
	}
	// Tokens via Authorization: Bearer and ?token= too.
	for _, set := range []func(*http.Request){
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) },
		func(r *http.Request) { r.URL.RawQuery = "token=" + secret },
		func(r *http.Request) { r.Header.Set("X-Consul-Token", secret) },
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+"/v1/kv/a", nil)
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%v: status %d", req.Header, resp.StatusCode)
		}
	}
	// An unknown token is refused.
	_, _, err = srv.ClientWithToken(t, "6f3a39b1-9b3f-4a4f-9d3a-0d6f5d1e0c11").KV().Get("a", nil)
	denied(t, "unknown token", err)
}

func TestACLBootstrapResetFile(t *testing.T) {
	dir := t.TempDir()
	srv := servertest.Start(t, servertest.WithACL("deny"), func(o *server.Options) {
		o.Dev, o.DataDir, o.HeartbeatTimeout = false, dir, 100*time.Millisecond
	})
	mgmt, _ := srv.Bootstrap(t)
	_, _, err := srv.Client.ACL().Bootstrap()
	denied(t, "second bootstrap", err)
	i := strings.LastIndex(err.Error(), "reset index: ")
	idx, perr := strconv.ParseUint(strings.TrimRight(err.Error()[i+len("reset index: "):], ")"), 10, 64)
	if i < 0 || perr != nil {
		t.Fatalf("no reset index in %v", err)
	}
	reset := filepath.Join(dir, "acl-bootstrap-reset")
	if err := os.WriteFile(reset, []byte(strconv.FormatUint(idx+1, 10)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = srv.Client.ACL().Bootstrap()
	denied(t, "bootstrap with a wrong reset index", err)
	if err := os.WriteFile(reset, []byte(strconv.FormatUint(idx, 10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, _, err := srv.Client.ACL().Bootstrap()
	if err != nil || tok.SecretID == "" {
		t.Fatalf("bootstrap with the reset index: %v", err)
	}
	if _, err := os.Stat(reset); !os.IsNotExist(err) {
		t.Fatalf("reset file still there: %v", err)
	}
	_, _, err = srv.Client.ACL().Bootstrap()
	denied(t, "third bootstrap", err)
	if _, _, err := mgmt.KV().Get("x", nil); err != nil { // the first token still works
		t.Fatal(err)
	}
}

func TestACLReadOnlyTokenCannotWrite(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	mustPut(t, mgmt.KV(), "cfg/a", "1")
	sess, _, err := mgmt.Session().Create(&consulapi.SessionEntry{Node: srv.NodeName(), Checks: []string{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ro := srv.ClientWithToken(t, servertest.TokenWithRules(t, mgmt, "ro", `key_prefix "" { policy = "read" }`))
	kv := ro.KV()
	if p, _, err := kv.Get("cfg/a", nil); err != nil || string(p.Value) != "1" {
		t.Fatalf("read: %v %v", p, err)
	}
	_, err = kv.Put(&consulapi.KVPair{Key: "cfg/a", Value: []byte("2")}, nil)
	denied(t, "put", err)
	_, _, err = kv.CAS(&consulapi.KVPair{Key: "cfg/a", Value: []byte("2"), ModifyIndex: 1}, nil)
	denied(t, "cas", err)
	_, err = kv.Delete("cfg/a", nil)
	denied(t, "delete", err)
	_, err = kv.DeleteTree("cfg/", nil)
	denied(t, "delete tree", err)
	_, _, err = kv.Acquire(&consulapi.KVPair{Key: "cfg/lock", Session: sess}, nil)
	denied(t, "acquire", err)
	_, _, _, err = ro.Txn().Txn(consulapi.TxnOps{
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVGet, Key: "cfg/a"}},
		{KV: &consulapi.KVTxnOp{Verb: consulapi.KVSet, Key: "cfg/b", Value: []byte("x")}},
	}, nil)
	denied(t, "txn with one write", err)
	ok, resp, _, err := ro.Txn().Txn(consulapi.TxnOps{{KV: &consulapi.KVTxnOp{Verb: consulapi.KVGet, Key: "cfg/a"}}}, nil)
	if err != nil || !ok || len(resp.Results) != 1 {
		t.Fatalf("read-only txn: %v %+v %v", ok, resp, err)
	}
	if p, _, err := mgmt.KV().Get("cfg/a", nil); err != nil || string(p.Value) != "1" {
		t.Fatalf("after the refusals: %v %v", p, err)
	}
	if p, _, _ := mgmt.KV().Get("cfg/b", nil); p != nil {
		t.Fatal("a refused txn wrote cfg/b")
	}
}

func TestACLPrefixTokenSeesOnlyItsKeys(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	for _, k := range []string{"app/a", "app/b/c", "other/x", "top"} {
		mustPut(t, mgmt.KV(), k, "v")
	}
	c := srv.ClientWithToken(t, servertest.TokenWithRules(t, mgmt, "app", `key_prefix "app/" { policy = "write" }`))
	pairs, meta, err := c.KV().List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pairs {
		got = append(got, p.Key)
	}
	if !slices.Equal(got, []string{"app/a", "app/b/c"}) || !meta.ResultsFilteredByACLs {
		t.Fatalf("recurse: %v, filtered %v", got, meta.ResultsFilteredByACLs)
	}
	keys, meta, err := c.KV().Keys("", "/", nil)
	if err != nil || !slices.Equal(keys, []string{"app/"}) || !meta.ResultsFilteredByACLs {
		t.Fatalf("keys: %v %v filtered %v", keys, err, meta.ResultsFilteredByACLs)
	}
	// Unfiltered: no header, and a management list sees everything.
	_, meta, err = c.KV().List("app/", nil)
	if err != nil || meta.ResultsFilteredByACLs {
		t.Fatalf("own prefix: %v filtered %v", err, meta.ResultsFilteredByACLs)
	}
	all, _, _ := mgmt.KV().List("", nil)
	if len(all) != 4 {
		t.Fatalf("management list: %d", len(all))
	}
	// A txn's get-tree is filtered too.
	_, resp, _, err := c.Txn().Txn(consulapi.TxnOps{{KV: &consulapi.KVTxnOp{Verb: consulapi.KVGetTree, Key: ""}}}, nil)
	if err != nil || len(resp.Results) != 2 {
		t.Fatalf("txn get-tree: %+v %v", resp, err)
	}
	if _, err := c.KV().Put(&consulapi.KVPair{Key: "app/new", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.KV().Put(&consulapi.KVPair{Key: "other/new", Value: []byte("1")}, nil)
	denied(t, "write outside the prefix", err)
	_, err = c.KV().DeleteTree("", nil)
	denied(t, "delete of the whole tree", err)
}

func TestACLDenyBeatsWriteAtEqualLength(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	mustPut(t, mgmt.KV(), "k/a", "v")
	pw, _, err := mgmt.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: "w", Rules: `key_prefix "k/" { policy = "write" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pd, _, err := mgmt.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: "d", Rules: `{"key_prefix": {"k/": {"policy": "deny"}}}`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := mgmt.ACL().TokenCreate(&consulapi.ACLToken{Policies: []*consulapi.ACLTokenPolicyLink{{ID: pw.ID}, {Name: pd.Name}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := srv.ClientWithToken(t, tok.SecretID)
	_, err = c.KV().Put(&consulapi.KVPair{Key: "k/a", Value: []byte("x")}, nil)
	denied(t, "write under deny+write", err)
	_, _, err = c.KV().Get("k/a", nil)
	denied(t, "read under deny+write", err)
}

func TestACLTokenDeletedMidBlockingQuery(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	mustPut(t, mgmt.KV(), "w/k", "1")
	tok, _, err := mgmt.ACL().TokenCreate(&consulapi.ACLToken{Policies: []*consulapi.ACLTokenPolicyLink{{ID: policyID(t, mgmt, "w", `key_prefix "w/" { policy = "read" }`)}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := srv.ClientWithToken(t, tok.SecretID)
	p, meta, err := c.KV().Get("w/k", nil)
	if err != nil || p == nil {
		t.Fatal(err)
	}
	type result struct {
		p   *consulapi.KVPair
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, _, err := c.KV().Get("w/k", &consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		done <- result{p, err}
	}()
	servertest.Eventually(t, "the query to block", func() bool { return srv.BlockingQueries() > 0 })
	if _, err := mgmt.ACL().TokenDelete(tok.AccessorID, nil); err != nil {
		t.Fatal(err)
	}
	mustPut(t, mgmt.KV(), "w/k", "2") // a change it would otherwise see
	res := <-done
	if res.p != nil {
		t.Fatalf("a deleted token got %q", res.p.Value)
	}
	denied(t, "blocking query of a deleted token", res.err)
}

func policyID(t *testing.T, mgmt *consulapi.Client, name, rules string) string {
	t.Helper()
	p, _, err := mgmt.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: name, Rules: rules}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.ID
}

func TestACLExpiredTokenRefused(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	mustPut(t, mgmt.KV(), "e", "1")
	tok, _, err := mgmt.ACL().TokenCreate(&consulapi.ACLToken{ExpirationTTL: time.Second,
		Policies: []*consulapi.ACLTokenPolicyLink{{ID: policyID(t, mgmt, "e", `key "e" { policy = "read" }`)}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ExpirationTime == nil || tok.ExpirationTTL != time.Second {
		t.Fatalf("token expiration: %+v", tok)
	}
	c := srv.ClientWithToken(t, tok.SecretID)
	servertest.Eventually(t, "the token to expire", func() bool {
		_, _, err := c.KV().Get("e", nil)
		return err != nil && strings.Contains(err.Error(), "403")
	})
	if !time.Now().After(*tok.ExpirationTime) {
		t.Fatal("refused before its expiration time")
	}
}

func TestACLTokenAndPolicyCRUD(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"), func(o *server.Options) { o.ACL.KeepSecrets = true })
	mgmt, _ := srv.Bootstrap(t)
	acl := mgmt.ACL()
	p, _, err := acl.PolicyCreate(&consulapi.ACLPolicy{Name: "p1", Description: "d", Rules: `key "a" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := acl.PolicyCreate(&consulapi.ACLPolicy{Name: "bad", Rules: `key "a" { policy = "rwx" }`}, nil); err == nil || !strings.Contains(err.Error(), "invalid policy") {
		t.Fatalf("bad rules: %v", err)
	}
	if _, _, err := acl.PolicyCreate(&consulapi.ACLPolicy{Name: "p1"}, nil); err == nil {
		t.Fatal("duplicate policy name accepted")
	}
	byName, _, err := acl.PolicyReadByName("p1", nil)
	if err != nil || byName.ID != p.ID || byName.Rules != p.Rules {
		t.Fatalf("by name: %+v %v", byName, err)
	}
	p.Rules = `key "a" { policy = "write" }`
	if _, _, err := acl.PolicyUpdate(p, nil); err != nil {
		t.Fatal(err)
	}
	list, _, err := acl.PolicyList(nil)
	if err != nil || len(list) != 2 {
		t.Fatalf("policies: %d %v", len(list), err)
	}
	tok, _, err := acl.TokenCreate(&consulapi.ACLToken{Description: "t", Local: true, Policies: []*consulapi.ACLTokenPolicyLink{{Name: "p1"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// -acl-hash-secrets=false: the secret reads back, as Consul.
	read, _, err := acl.TokenRead(tok.AccessorID, nil)
	if err != nil || read.SecretID != tok.SecretID || !read.Local || read.Description != "t" || read.Policies[0].ID != p.ID {
		t.Fatalf("read back: %+v %v", read, err)
	}
	c := srv.ClientWithToken(t, tok.SecretID)
	if _, err := c.KV().Put(&consulapi.KVPair{Key: "a", Value: []byte("1")}, nil); err != nil {
		t.Fatalf("write with the updated policy: %v", err)
	}
	tok.Description = "t2"
	tok.Policies = nil
	if _, _, err := acl.TokenUpdate(tok, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.KV().Put(&consulapi.KVPair{Key: "a", Value: []byte("1")}, nil)
	denied(t, "write after the policy was unlinked", err)
	toks, _, err := acl.TokenList(nil)
	if err != nil || len(toks) != 3 { // bootstrap, t, anonymous
		t.Fatalf("tokens: %d %v", len(toks), err)
	}
	// A token without acl rules cannot manage ACLs.
	_, _, err = c.ACL().TokenList(nil)
	denied(t, "token list without acl read", err)
	_, _, err = c.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: "mine", Rules: `key_prefix "" { policy = "write" }`}, nil)
	denied(t, "policy create without acl write", err)
	// The anonymous token takes policies like any other.
	anon, _, err := acl.TokenRead("00000000-0000-0000-0000-000000000002", nil)
	if err != nil || anon.SecretID != "anonymous" {
		t.Fatalf("anonymous: %+v %v", anon, err)
	}
	anon.Policies = []*consulapi.ACLTokenPolicyLink{{ID: p.ID}}
	if _, _, err := acl.TokenUpdate(anon, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: "a", Value: []byte("anon")}, nil); err != nil {
		t.Fatalf("anonymous with a policy: %v", err)
	}
	if _, err := acl.TokenDelete(tok.AccessorID, nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.KV().Get("a", nil)
	denied(t, "deleted token", err)
	if _, err := acl.PolicyDelete(p.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, err = srv.Client.KV().Put(&consulapi.KVPair{Key: "a", Value: []byte("anon")}, nil)
	denied(t, "anonymous after its policy was deleted", err)
}

func TestACLReadersWithoutWriteSeeNoSecrets(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"), func(o *server.Options) { o.ACL.KeepSecrets = true })
	mgmt, secret := srv.Bootstrap(t)
	reader := srv.ClientWithToken(t, servertest.TokenWithRules(t, mgmt, "acl-reader", `acl = "read"`))
	toks, _, err := reader.ACL().TokenList(nil)
	if err != nil || len(toks) != 3 {
		t.Fatalf("token list: %v %v", toks, err)
	}
	for _, tok := range toks {
		if tok.SecretID == secret {
			t.Fatal("an acl reader read the management secret")
		}
	}
	if all, _, _ := mgmt.ACL().TokenList(nil); !slices.ContainsFunc(all, func(e *consulapi.ACLTokenListEntry) bool { return e.SecretID == secret }) {
		t.Fatal("acl write does not read kept secrets back")
	}
	_, _, err = reader.ACL().TokenCreate(&consulapi.ACLToken{}, nil)
	denied(t, "token create with acl read", err)
}

func TestACLDefaultAllow(t *testing.T) {
	bad := server.Options{Dev: true, ACL: server.ACLOptions{Enabled: true, DefaultPolicy: "maybe"}}
	if err := bad.Validate(); !errors.Is(err, server.ErrInvalidOptions) || !strings.Contains(err.Error(), "-acl-default-policy") {
		t.Fatalf("bad default policy: %v", err)
	}
	srv := servertest.Start(t, servertest.WithACL("allow"))
	mgmt, _ := srv.Bootstrap(t)
	ro := servertest.TokenWithRules(t, mgmt, "ro", `key_prefix "ro/" { policy = "read" }`)
	mustPut(t, srv.Client.KV(), "open", "1") // anonymous, no rule: allowed
	_, err := srv.ClientWithToken(t, ro).KV().Put(&consulapi.KVPair{Key: "ro/x", Value: []byte("1")}, nil)
	denied(t, "a read rule under default allow", err)
	_, _, err = srv.Client.ACL().TokenCreate(&consulapi.ACLToken{}, nil)
	denied(t, "anonymous token create under default allow", err)
}

func TestACLPolicyForAnotherDatacenterGrantsNothing(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	mgmt, _ := srv.Bootstrap(t)
	mk := func(name string, dcs []string) *consulapi.Client {
		p, _, err := mgmt.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: name, Rules: `key_prefix "" { policy = "write" }`, Datacenters: dcs}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := mgmt.ACL().TokenCreate(&consulapi.ACLToken{Policies: []*consulapi.ACLTokenPolicyLink{{ID: p.ID}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return srv.ClientWithToken(t, tok.SecretID)
	}
	_, err := mk("dc9-only", []string{"dc9"}).KV().Put(&consulapi.KVPair{Key: "k", Value: []byte("1")}, nil)
	denied(t, "a policy for dc9 in dc1", err)
	if _, err := mk("dc1-too", []string{"dc9", "dc1"}).KV().Put(&consulapi.KVPair{Key: "k", Value: []byte("1")}, nil); err != nil {
		t.Fatalf("a policy for dc1: %v", err)
	}
}
