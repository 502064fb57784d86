package checks

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

// userAgent is what Consul's HTTP checks send; services that allow-list
// Consul's probes keep working.
const userAgent = "Consul Health Check"

// httpProbe is an HTTP check: 2xx passing, 429 warning, anything else or
// no answer critical.
type httpProbe struct {
	url, method, body string
	header            http.Header
	client            *http.Client
	outputMax         int
}

func newHTTPProbe(d *config.Check, timeout time.Duration, outputMax int) *httpProbe {
	// No keep-alives, as Consul: a probe every interval should not fail
	// on a connection the server closed in between.
	tr := &http.Transport{
		Proxy:             http.ProxyFromEnvironment,
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: d.TLSSkipVerify, ServerName: d.TLSServerName}, //nolint:gosec // the check's own tls_skip_verify
	}
	client := &http.Client{Transport: tr, Timeout: timeout}
	if d.DisableRedirects {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	method := d.Method
	if method == "" {
		method = http.MethodGet
	}
	return &httpProbe{url: d.HTTP, method: method, body: d.Body, header: http.Header(d.Header).Clone(), client: client, outputMax: outputMax}
}

func (p *httpProbe) probe(ctx context.Context) (string, string) {
	req, err := http.NewRequestWithContext(ctx, p.method, p.url, strings.NewReader(p.body))
	if err != nil {
		return config.StatusCritical, err.Error()
	}
	req.Header = p.header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", userAgent)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/plain, text/*, */*")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return config.StatusCritical, err.Error()
	}
	defer resp.Body.Close()

	prefix := fmt.Sprintf("HTTP %s %s: %s Output: ", p.method, p.url, resp.Status)
	budget := max(p.outputMax-len(prefix), 0)
	body := &tailBuffer{size: budget}
	// Read at most a bounded amount: a huge body must not hold the check.
	_, _ = io.Copy(body, io.LimitReader(resp.Body, 1<<20))
	out := prefix + body.tail(budget)

	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return config.StatusPassing, out
	case resp.StatusCode == http.StatusTooManyRequests:
		return config.StatusWarning, out
	}
	return config.StatusCritical, out
}
