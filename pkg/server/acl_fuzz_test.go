package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
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
