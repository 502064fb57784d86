package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// The README's node-token recipe: a node's token reads kvx/hosts/ (and the
// per-node freezes under kvx/locks/) and writes only its own
// acknowledgement. Its `kvx in` is refused with
// nothing written; its `kvx out` delivers and acknowledges. The tokens go
// through CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE, as a fleet's would.
func TestACLNodeTokenRecipe(t *testing.T) {
	srv := servertest.Start(t, servertest.WithACL("deny"))
	dir := t.TempDir()
	// The README's commands: bootstrap, then a policy and a token per node.
	out, errOut, code := kvx(t, srv, "", "acl", "bootstrap", "-format", "json")
	expect(t, "acl bootstrap", code, 0, out, errOut, "SecretID")
	var boot consulapi.ACLToken
	if err := json.Unmarshal([]byte(out), &boot); err != nil || boot.SecretID == "" {
		t.Fatalf("acl bootstrap: %v %q", err, out)
	}
	secret := boot.SecretID
	mgmt := srv.ClientWithToken(t, secret)
	out, errOut, code = kvx(t, srv, "", "acl", "bootstrap")
	expect(t, "acl bootstrap again", code, 1, out, errOut, "ACL bootstrap no longer allowed")
	content := hostsFile(30, "v1")
	src := writeFile(t, dir, "hosts", content)
	t.Setenv("CONSUL_HTTP_TOKEN", secret)
	out, errOut, code = kvx(t, srv, "", "in", "-k", "hosts", "-f", src)
	expect(t, "in with the management token", code, 0, out, errOut, "uploaded kvx/hosts")

	rules := writeFile(t, dir, "node-test-node.hcl", `key_prefix "kvx/hosts/" { policy = "read" }
key "kvx/hosts/nodes/test-node" { policy = "write" }
key_prefix "kvx/locks/" { policy = "read" }
`)
	out, errOut, code = kvx(t, srv, "", "acl", "policy", "create", "-name", "node-test-node", "-rules", "@"+rules)
	expect(t, "acl policy create", code, 0, out, errOut, "Name:         node-test-node")
	out, errOut, code = kvx(t, srv, "", "acl", "token", "create", "-policy-name", "node-test-node", "-description", "test-node", "-format", "json")
	expect(t, "acl token create", code, 0, out, errOut, "node-test-node")
	var tok consulapi.ACLToken
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.SecretID == "" {
		t.Fatalf("acl token create: %v %q", err, out)
	}
	nodeToken := tok.SecretID
	bad := writeFile(t, dir, "bad.hcl", "key \"a\" {\n  policy = \"wrtie\"\n}\n")
	out, errOut, code = kvx(t, srv, "", "acl", "policy", "create", "-name", "bad", "-rules", "@"+bad)
	expect(t, "acl policy create with bad rules", code, exitUsage, out, errOut, bad+": rules: line 2", `invalid policy "wrtie"`)
	tokenFile := writeFile(t, dir, "token", nodeToken+"\n")
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", tokenFile)

	evil := writeFile(t, dir, "evil", hostsFile(30, "evil"))
	out, errOut, code = kvx(t, srv, "", "in", "-k", "hosts", "-f", evil)
	expect(t, "in with a node token", code, 1, out, errOut, "Permission denied")
	sum, _, err := mgmt.KV().Get("kvx/hosts/checksum", nil)
	if err != nil || sum == nil || string(sum.Value) != checksum.OfString(content) {
		t.Fatalf("checksum after the refused in: %v %v", sum, err)
	}
	keys, _, err := mgmt.KV().Keys("kvx/hosts/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	before := len(keys)

	target := filepath.Join(dir, "out", "hosts")
	out, errOut, code = kvx(t, srv, "", "out", "-k", "hosts", "-f", target)
	expect(t, "out with the node token", code, 0, out, errOut, "delivered hosts")
	if b, _ := os.ReadFile(target); string(b) != content {
		t.Fatalf("target = %q", b)
	}
	ack, _, err := mgmt.KV().Get("kvx/hosts/nodes/test-node", nil)
	if err != nil || ack == nil {
		t.Fatalf("no acknowledgement: %v", err)
	}
	out, errOut, code = kvx(t, srv, "", "status", "-k", "hosts")
	expect(t, "status with the node token", code, 0, out, errOut, "delivered 1/1 nodes")
	if keys, _, _ := mgmt.KV().Keys("kvx/hosts/", "", nil); len(keys) != before+1 {
		t.Fatalf("keys %v: want only the acknowledgement added to %d", keys, before)
	}

	// It cannot forge another node's acknowledgement.
	c := srv.ClientWithToken(t, nodeToken)
	if _, err := c.KV().Put(&consulapi.KVPair{Key: "kvx/hosts/nodes/other-node", Value: ack.Value}, nil); err == nil {
		t.Fatal("a node token wrote another node's acknowledgement")
	}
	t.Setenv("KVX_NODE", "other-node")
	var outBuf, errBuf servertest.Buffer
	// kvx out delivers anyway (an acknowledgement is best effort): the
	// refusal is a warning, and nothing is written.
	_ = execute(t.Context(), []string{"out", "-k", "hosts", "-f", filepath.Join(dir, "other"), "-node", "other-node", "-http-addr", srv.HTTPAddr()}, nil, &outBuf, &errBuf)
	if !strings.Contains(errBuf.String(), "acknowledge") || !strings.Contains(errBuf.String(), "Permission denied") {
		t.Fatalf("out as another node:\n%s%s", outBuf.String(), errBuf.String())
	}
	if p, _, _ := mgmt.KV().Get("kvx/hosts/nodes/other-node", nil); p != nil {
		t.Fatal("another node's acknowledgement was written")
	}
}
