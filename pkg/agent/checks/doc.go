// Package checks runs a kvx agent's health checks as Consul's agent runs
// them: script (`args`), HTTP, TCP, gRPC health and TTL checks, each on its
// interval with its timeout, its output capped (4 KiB unless the check says
// otherwise), success_before_passing and failures_before_warning/critical
// applied as Consul's status handler applies them.
//
// A Manager owns every check goroutine. Replace swaps the set of
// definitions (a SIGHUP reload): new checks start, removed ones stop,
// unchanged ones keep running with their state, and a changed one restarts
// from the status and output it had. Results are edge-triggered: Notify is
// called when a check starts and afterwards only when its status or output
// changed, so steady checks cost nothing downstream.
//
// This package must not read config files (package config does), talk to
// a server or the catalog, or decide anything about services: it reports
// check states and nothing else.
package checks
