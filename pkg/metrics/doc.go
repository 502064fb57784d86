// Package metrics is kvx's small metrics vocabulary: a Sink with counters,
// gauges and timings, a sink that discards, a fan-out, and a dogstatsd sink on
// DataDog/datadog-go (the only package of kvx that imports it).
//
// It must not import other kvx packages, and it never blocks its caller: a
// statsd sink drops what it cannot send.
package metrics
