// Package gitsync owns git2kv's logic: fetching repositories into a local
// cache (file://, https with basic or token auth, ssh with a key file and
// known_hosts), mapping the tree at a branch head to the keys KV should
// hold (mountpoint, repo and branch segments, source_root, include and
// exclude globs, extension stripping, expansion of JSON, YAML and
// .properties files into one key per leaf), planning the minimal set of
// exact-key puts and deletes against what KV holds under the branch's
// prefix, applying it in transactions bounded by operations and bytes with
// the <branch>.ref marker compare-and-set in every one, and running that
// on a timer and on verified webhooks (GitHub, GitLab, Gitea, Bitbucket).
//
// It is the only package of kvx that imports go-git. It talks to a server
// only through the KV interface, which *api.KV satisfies: it never builds a
// Consul client (pkg/client does), never parses flags (internal/cli does),
// never deletes by prefix (every delete names one key) and never trusts a
// webhook's payload for content: a webhook only triggers a fetch.
package gitsync
