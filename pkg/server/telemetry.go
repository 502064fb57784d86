package server

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"

	"github.com/kvxproject/kvx/pkg/metrics"
)

// telemetry wires hashicorp/go-metrics, which Raft reports into, to an
// in-memory sink (served at /v1/agent/metrics, as Consul does) and to the
// caller's metrics.Sink (dogstatsd in production).
type gometricsSummary = gometrics.MetricsSummary

type telemetry struct {
	m     *gometrics.Metrics
	inmem *gometrics.InmemSink
}

func newTelemetry(sink metrics.Sink) (*telemetry, error) {
	inmem := gometrics.NewInmemSink(10*time.Second, time.Minute)
	fan := gometrics.FanoutSink{inmem, bridge{sink}}
	conf := gometrics.DefaultConfig("kvx")
	conf.EnableHostname = false
	conf.EnableRuntimeMetrics = false // its goroutine could never be stopped
	conf.EnableServiceLabel = false
	// Raft reports into the process-wide registry; with several servers in
	// one process (tests) the last one started receives Raft's figures.
	m, err := gometrics.NewGlobal(conf, fan)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &telemetry{m: m, inmem: inmem}, nil
}

// bridge forwards go-metrics calls to a metrics.Sink.
type bridge struct{ sink metrics.Sink }

func metricName(key []string) string { return strings.Join(key, ".") }

func labelTags(labels []gometrics.Label) []string {
	if len(labels) == 0 {
		return nil
	}
	tags := make([]string, len(labels))
	for i, l := range labels {
		tags[i] = l.Name + ":" + l.Value
	}
	return tags
}

func (b bridge) SetGauge(key []string, val float32) { b.sink.Gauge(metricName(key), float64(val)) }
func (b bridge) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	b.sink.Gauge(metricName(key), float64(val), labelTags(labels)...)
}
func (b bridge) EmitKey(key []string, val float32) { b.sink.Gauge(metricName(key), float64(val)) }
func (b bridge) IncrCounter(key []string, val float32) {
	b.sink.Count(metricName(key), int64(val))
}
func (b bridge) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	b.sink.Count(metricName(key), int64(val), labelTags(labels)...)
}

// Samples from go-metrics are milliseconds.
func (b bridge) AddSample(key []string, val float32) {
	b.sink.Timing(metricName(key), time.Duration(float64(val)*float64(time.Millisecond)))
}
func (b bridge) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	b.sink.Timing(metricName(key), time.Duration(float64(val)*float64(time.Millisecond)), labelTags(labels)...)
}

// writePrometheus writes a metrics summary in Prometheus' text format.
func writePrometheus(w io.Writer, s gometrics.MetricsSummary) {
	name := func(n string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
				return r
			}
			return '_'
		}, n)
	}
	labels := func(m map[string]string) string {
		if len(m) == 0 {
			return ""
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%q", name(k), m[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	for _, g := range s.Gauges {
		n := name(g.Name)
		fmt.Fprintf(w, "# TYPE %s gauge\n%s%s %g\n", n, n, labels(g.DisplayLabels), g.Value)
	}
	for _, c := range s.Counters {
		n := name(c.Name) + "_total"
		fmt.Fprintf(w, "# TYPE %s counter\n%s%s %g\n", n, n, labels(c.DisplayLabels), c.Sum)
	}
	for _, sm := range s.Samples {
		n := name(sm.Name)
		l := labels(sm.DisplayLabels)
		fmt.Fprintf(w, "# TYPE %s summary\n%s_sum%s %g\n%s_count%s %d\n", n, n, l, sm.Sum, n, l, sm.Count)
	}
}
