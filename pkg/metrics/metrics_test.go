package metrics

import (
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) add(s string) { r.mu.Lock(); r.seen = append(r.seen, s); r.mu.Unlock() }
func (r *recorder) Count(n string, v int64, tags ...string) {
	r.add("count " + n + " " + strings.Join(tags, ","))
}
func (r *recorder) Gauge(n string, v float64, tags ...string) { r.add("gauge " + n) }
func (r *recorder) Timing(n string, d time.Duration, tags ...string) {
	r.add("timing " + n + " " + d.String())
}

func TestMultiFansOutAndDropsNils(t *testing.T) {
	a, b := &recorder{}, &recorder{}
	if Multi() != Discard || Multi(nil, Discard) != Discard {
		t.Fatal("Multi of nothing is not Discard")
	}
	if got := Multi(a, nil); got != Sink(a) {
		t.Fatal("Multi of one sink is not that sink")
	}
	m := Multi(a, b)
	m.Count("c", 1, "k:v")
	m.Gauge("g", 2)
	m.Timing("t", time.Second)
	want := []string{"count c k:v", "gauge g", "timing t 1s"}
	for _, r := range []*recorder{a, b} {
		if !slices.Equal(r.seen, want) {
			t.Fatalf("sink saw %q, want %q", r.seen, want)
		}
	}
}

func TestDogstatsdSendsToAgent(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	d, err := NewDogstatsd(pc.LocalAddr().String(), "kvx.", "host:test")
	if err != nil {
		t.Fatal(err)
	}
	d.Count("in", 3, "key:app")
	d.Gauge("raft.peers", 3)
	d.Timing("time", 1500*time.Millisecond, "result:ok")
	if err := d.Close(); err != nil { // flushes
		t.Fatal(err)
	}
	var got strings.Builder
	buf := make([]byte, 64<<10)
	// Counts and gauges are aggregated by the client and flushed apart from
	// timings: read until all three arrived or the deadline says they won't.
	for !strings.Contains(got.String(), "kvx.time") || !strings.Contains(got.String(), "kvx.in") || !strings.Contains(got.String(), "kvx.raft.peers") {
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read statsd packets: %v (so far %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	for _, want := range []string{"kvx.in:3|c|#host:test,key:app", "kvx.raft.peers:3|g|#host:test", "kvx.time:1500.000000|ms|#host:test,result:ok"} {
		if !strings.Contains(got.String(), want) {
			t.Errorf("statsd packets %q lack %q", got.String(), want)
		}
	}
}

func TestDogstatsdEvent(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	d, err := NewDogstatsd(pc.LocalAddr().String(), "kvx.", "host:test")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Event("Updated: app/hosts", "-old\n+new\n", "info", "kvx:success"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	buf := make([]byte, 64<<10)
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	// The dogstatsd event datagram: _e{title length,text length}:title|text|...
	got := string(buf[:n])
	for _, want := range []string{"_e{18,12}:Updated: app/hosts|-old\\n+new\\n", "|t:info", "kvx:success", "host:test"} {
		if !strings.Contains(got, want) {
			t.Errorf("event datagram %q lacks %q", got, want)
		}
	}
}
