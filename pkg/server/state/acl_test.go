package state

import (
	"bytes"
	"errors"
	"testing"
)

func TestACLBootstrapOnceAndSnapshot(t *testing.T) {
	s := New()
	mgmt := &ACLPolicy{ID: "p1", Name: "global-management", Rules: `acl = "write"`}
	tok := &ACLToken{AccessorID: "a1", SecretHash: "h1", Policies: []ACLLink{{ID: "p1"}}}
	w := s.Write()
	w.At(5)
	if err := w.ACLBootstrap(0, tok, mgmt); err != nil {
		t.Fatal(err)
	}
	w.Commit()
	w = s.Write()
	w.At(6)
	var done *ErrBootstrapped
	if err := w.ACLBootstrap(0, &ACLToken{AccessorID: "a2", SecretHash: "h2"}, mgmt); !errors.As(err, &done) || done.ResetIndex != 5 {
		t.Fatalf("second bootstrap: %v, want refused with reset index 5", err)
	}
	w.Abort()
	w = s.Write()
	w.At(7)
	if err := w.ACLTokenSet(&ACLToken{AccessorID: "a3", SecretHash: "h1"}); !errors.Is(err, ErrACL) {
		t.Fatalf("duplicate secret: %v", err)
	}
	if err := w.ACLPolicySet(&ACLPolicy{ID: "p2", Name: "global-management"}); !errors.Is(err, ErrACL) {
		t.Fatalf("duplicate policy name: %v", err)
	}
	w.Abort()

	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	fresh := New()
	if err := fresh.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	r := fresh.Read()
	if got := r.ACLTokenBySecretHash("h1"); got == nil || got.AccessorID != "a1" || got.CreateIndex != 5 {
		t.Fatalf("restored token: %+v", got)
	}
	if got := r.ACLPolicyByName("global-management"); got == nil || got.ID != "p1" {
		t.Fatalf("restored policy: %+v", got)
	}
	if r.ACLBootstrapIndex() != 5 {
		t.Fatalf("restored bootstrap index %d", r.ACLBootstrapIndex())
	}
	w = fresh.Write()
	w.At(8)
	if err := w.ACLBootstrap(5, &ACLToken{AccessorID: "a4", SecretHash: "h4"}, mgmt); err != nil {
		t.Fatalf("bootstrap with the reset index: %v", err)
	}
	w.Commit()
}
