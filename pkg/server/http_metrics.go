package server

import (
	"net/http"
	"sync/atomic"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
)

// HTTP request metrics (api.http, api.http.requests, tagged by endpoint and
// method) are counted per request in atomics and handed to go-metrics once
// a second by reportStats: go-metrics builds its label keys on every call,
// which at a fleet's wake-up (thousands of answers at once) cost several
// percent of the server's CPU. api.http.requests carries every request;
// api.http gets one sample per endpoint and method each second, that
// second's mean duration.

var (
	httpMetricKey   = []string{"api", "http"}
	httpMetricCount = []string{"api", "http", "requests"}
	httpMethods     = [...]string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost, http.MethodHead, "OTHER"}
)

func methodSlot(m string) int {
	for i, h := range httpMethods[:len(httpMethods)-1] {
		if m == h {
			return i
		}
	}
	return len(httpMethods) - 1
}

// routeStats is one endpoint's requests since the last flush, per method.
type routeStats struct {
	labels [len(httpMethods)][]gometrics.Label
	n, ns  [len(httpMethods)]atomic.Int64
}

func newRouteStats(endpoint string) *routeStats {
	rs := &routeStats{}
	for i, m := range httpMethods {
		rs.labels[i] = []gometrics.Label{{Name: "endpoint", Value: endpoint}, {Name: "method", Value: m}}
	}
	return rs
}

func (rs *routeStats) observe(method string, took time.Duration) {
	i := methodSlot(method)
	rs.n[i].Add(1)
	rs.ns[i].Add(int64(took))
}

// flush hands what was counted since the last flush to go-metrics.
func (rs *routeStats) flush(m *gometrics.Metrics) {
	for i := range httpMethods {
		n := rs.n[i].Swap(0)
		ns := rs.ns[i].Swap(0)
		if n == 0 {
			continue
		}
		m.IncrCounterWithLabels(httpMetricCount, float32(n), rs.labels[i])
		m.AddSampleWithLabels(httpMetricKey, float32(float64(ns)/float64(n)/1e6), rs.labels[i])
	}
}

// flushHTTPStats reports every route's requests since the last call.
func (s *Server) flushHTTPStats() {
	for _, rs := range s.routeStats {
		rs.flush(s.tel.m)
	}
}
