package metrics

import "time"

// Sink receives metrics. Names are dot-separated ("kv.apply"); tags are
// "name:value" strings. Implementations must be safe for concurrent use and
// must not block.
type Sink interface {
	Count(name string, value int64, tags ...string)
	Gauge(name string, value float64, tags ...string)
	Timing(name string, d time.Duration, tags ...string)
}

// Discard is a Sink that drops everything.
var Discard Sink = discard{}

type discard struct{}

func (discard) Count(string, int64, ...string)          {}
func (discard) Gauge(string, float64, ...string)        {}
func (discard) Timing(string, time.Duration, ...string) {}

// Multi returns a Sink that sends to every non-nil sink given.
func Multi(sinks ...Sink) Sink {
	var keep multi
	for _, s := range sinks {
		if s != nil && s != Discard {
			keep = append(keep, s)
		}
	}
	switch len(keep) {
	case 0:
		return Discard
	case 1:
		return keep[0]
	}
	return keep
}

type multi []Sink

func (m multi) Count(name string, v int64, tags ...string) {
	for _, s := range m {
		s.Count(name, v, tags...)
	}
}

func (m multi) Gauge(name string, v float64, tags ...string) {
	for _, s := range m {
		s.Gauge(name, v, tags...)
	}
}

func (m multi) Timing(name string, d time.Duration, tags ...string) {
	for _, s := range m {
		s.Timing(name, d, tags...)
	}
}

// Events receives Datadog-style events: a title, a text and an alert type
// ("info", "warning", "error", "success").
type Events interface {
	Event(title, text, alert string, tags ...string) error
}
