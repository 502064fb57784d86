// Package consulwatch runs Consul's watches (consul watch, and an agent's
// "watches" config) on consul/api/watch, the only package that imports it:
// a blocking query per watch type, a handler run when the result changed,
// with what sifter was written for on top. The handler's last successfully
// handled result (a hash, and for events their IDs) is kept in a state file,
// so a restarted watch does not run its handler again for a result it has
// already handled, and an event is handled once across restarts; a failing
// handler is retried with backoff until it succeeds or a newer result
// supersedes the one it failed on.
package consulwatch
