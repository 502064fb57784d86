package gitsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
)

// MaxWebhookBody caps a webhook's body.
const MaxWebhookBody = 4 << 20

// Webhook providers.
const (
	GitHub    = "github"
	GitLab    = "gitlab"
	Gitea     = "gitea"
	Bitbucket = "bitbucket"
)

var errSignature = errors.New("signature or token does not match the webhook secret")

// verifyWebhook says which provider sent r and checks its secret: GitHub's
// X-Hub-Signature-256, Gitea's X-Gitea-Signature and Bitbucket's
// X-Hub-Signature (HMAC-SHA256 of the body), GitLab's X-Gitlab-Token (the
// secret itself). It also says whether the event is a push.
func verifyWebhook(h http.Header, body, secret []byte) (provider string, push bool, err error) {
	switch {
	case h.Get("X-Gitea-Event") != "": // before GitHub: Gitea sends X-GitHub-Event too
		ev := h.Get("X-Gitea-Event")
		return Gitea, ev == "push", checkHMAC(h.Get("X-Gitea-Signature"), "", body, secret)
	case h.Get("X-Gitlab-Event") != "":
		ev := h.Get("X-Gitlab-Event")
		tok := h.Get("X-Gitlab-Token")
		if len(secret) == 0 || subtle.ConstantTimeCompare([]byte(tok), secret) != 1 {
			return GitLab, false, errSignature
		}
		return GitLab, ev == "Push Hook" || ev == "Tag Push Hook", nil
	case h.Get("X-GitHub-Event") != "":
		ev := h.Get("X-GitHub-Event")
		return GitHub, ev == "push", checkHMAC(h.Get("X-Hub-Signature-256"), "sha256=", body, secret)
	case h.Get("X-Event-Key") != "":
		ev := h.Get("X-Event-Key")
		return Bitbucket, ev == "repo:push" || ev == "repo:refs_changed", checkHMAC(h.Get("X-Hub-Signature"), "sha256=", body, secret)
	}
	return "", false, errors.New("not a GitHub, GitLab, Gitea or Bitbucket webhook (no event header)")
}

func checkHMAC(sig, prefix string, body, secret []byte) error {
	got, ok := strings.CutPrefix(sig, prefix)
	want := hmacHex(secret, body)
	if !ok || len(secret) == 0 || !hmac.Equal([]byte(got), []byte(want)) {
		return errSignature
	}
	return nil
}

func hmacHex(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// SignGitHub is the X-Hub-Signature-256 header GitHub sends for body.
func SignGitHub(secret, body []byte) string { return "sha256=" + hmacHex(secret, body) }

// webhookRepos picks the configured repositories a push event names, by
// URL or name; none picked means all. The payload chooses what to fetch,
// nothing more: what is synced always comes from the fetch.
func webhookRepos(body []byte, repos []Repo) []string {
	var payload map[string]any
	if json.Unmarshal(body, &payload) != nil {
		return nil
	}
	var seen []string
	var collect func(v any, depth int)
	collect = func(v any, depth int) {
		switch x := v.(type) {
		case string:
			seen = append(seen, normalizeURL(x))
		case map[string]any:
			if depth < 3 {
				for _, e := range x {
					collect(e, depth+1)
				}
			}
		}
	}
	for _, k := range []string{"repository", "project"} {
		collect(payload[k], 0)
	}
	var out []string
	for _, r := range repos {
		u := normalizeURL(r.URL)
		for _, s := range seen {
			if s == u || (s != "" && strings.HasSuffix(u, "/"+s)) {
				out = append(out, r.Name)
				break
			}
		}
	}
	return out
}

// normalizeURL makes clone URLs of one repository compare equal: no
// scheme, user, .git or trailing slash; scp-style host:path as host/path.
func normalizeURL(u string) string {
	u = strings.ToLower(strings.TrimSpace(u))
	if _, rest, ok := strings.Cut(u, "://"); ok {
		u = rest
	}
	if at := strings.LastIndex(u, "@"); at >= 0 && !strings.Contains(u[:at], "/") {
		u = u[at+1:]
	}
	if host, p, ok := strings.Cut(u, ":"); ok && !strings.Contains(host, "/") && !strings.HasPrefix(p, "//") {
		if _, err := fmt.Sscanf(p, "%d", new(int)); err != nil { // host:path, not host:port
			u = host + "/" + p
		}
	}
	u = strings.TrimSuffix(strings.TrimRight(u, "/"), ".git")
	return path.Clean("/" + u)[1:]
}
