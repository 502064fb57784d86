package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// FuzzRequestToken: whatever the headers and query hold, the token read is
// one of them, in Consul's order, and reading never panics.
func FuzzRequestToken(f *testing.F) {
	f.Add("", "", "")
	f.Add("abc", "", "")
	f.Add("", "Bearer xyz", "")
	f.Add("", "bearer  xyz ", "q")
	f.Add("", "Basic Zm9v", "")
	f.Add("x", "Bearer", "%zz")
	f.Fuzz(func(t *testing.T, header, auth, query string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: "token=" + query}}
		if header != "" {
			r.Header["X-Consul-Token"] = []string{header}
		}
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		got := requestToken(r)
		q := r.URL.Query().Get("token")
		switch {
		case q != "":
			if got != q {
				t.Fatalf("token %q, want the query's %q", got, q)
			}
		case header != "":
			if got != header {
				t.Fatalf("token %q, want the header's %q", got, header)
			}
		case len(auth) > 7 && strings.EqualFold(auth[:7], "bearer "):
			if got != strings.TrimSpace(auth[7:]) {
				t.Fatalf("token %q from %q", got, auth)
			}
		default:
			if got != "" {
				t.Fatalf("token %q from nothing (auth %q)", got, auth)
			}
		}
	})
}

// BenchmarkResolveToken: what ACLs add to each request: hash the secret,
// find the token, take its cached Authorizer, check a key.
func BenchmarkResolveToken(b *testing.B) {
	s := &Server{opts: Options{ACL: ACLOptions{Enabled: true}}, store: state.New()}
	w := s.store.Write()
	w.At(1)
	if err := w.ACLPolicySet(&state.ACLPolicy{ID: "p", Name: "p", Rules: `key_prefix "app/" { policy = "write" }`}); err != nil {
		b.Fatal(err)
	}
	if err := w.ACLTokenSet(&state.ACLToken{AccessorID: "a", SecretHash: hashSecret("secret"), Policies: []state.ACLLink{{ID: "p"}}}); err != nil {
		b.Fatal(err)
	}
	w.Commit()
	for b.Loop() {
		a, _, err := s.resolveToken(s.store.Read(), "secret")
		if err != nil || !a.KeyWrite("app/x") {
			b.Fatal("refused")
		}
	}
}
