package metrics

import (
	"fmt"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"
)

// Dogstatsd sends metrics to a dogstatsd agent over UDP.
type Dogstatsd struct {
	client *statsd.Client
}

var _ Sink = (*Dogstatsd)(nil)

// NewDogstatsd returns a sink sending to addr ("host:port"), with every name
// prefixed by namespace (e.g. "kvx.") and the given tags on every metric.
func NewDogstatsd(addr, namespace string, tags ...string) (*Dogstatsd, error) {
	c, err := statsd.New(addr, statsd.WithNamespace(namespace), statsd.WithTags(tags))
	if err != nil {
		return nil, fmt.Errorf("dogstatsd %s: %w", addr, err)
	}
	return &Dogstatsd{client: c}, nil
}

// Count adds value to a counter.
func (d *Dogstatsd) Count(name string, value int64, tags ...string) {
	_ = d.client.Count(name, value, tags, 1) // best effort by design: statsd drops on overflow
}

// Gauge sets a gauge.
func (d *Dogstatsd) Gauge(name string, value float64, tags ...string) {
	_ = d.client.Gauge(name, value, tags, 1)
}

// Timing records a duration.
func (d *Dogstatsd) Timing(name string, dur time.Duration, tags ...string) {
	_ = d.client.Timing(name, dur, tags, 1)
}

// Close flushes what is buffered and closes the socket.
func (d *Dogstatsd) Close() error { return d.client.Close() }

// Event sends a Datadog event through the agent. alert is "info",
// "warning", "error" or "success".
func (d *Dogstatsd) Event(title, text, alert string, tags ...string) error {
	e := statsd.NewEvent(title, text)
	e.AlertType = statsd.EventAlertType(alert)
	e.Tags = tags
	return d.client.Event(e)
}
