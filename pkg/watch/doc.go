// Package watch owns the blocking-query loop every long-running kvx tool
// shares: ask at an index, wake on a change, re-check everything every
// reconcile interval so a missed change is caught, back off with jitter on
// errors, and start over when the server's index goes backwards (a restore
// or a new cluster). It knows nothing of KV layouts: the query and
// the handler are the caller's. File follows one local file through writes
// and atomic renames (fsnotify on its directory; only this package imports
// fsnotify), FileQuiet and FileWith the same with a quiet period after a
// change and retries of a failed call.
package watch
