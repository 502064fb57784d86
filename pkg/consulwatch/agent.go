package consulwatch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api/watch"
)

// FromAgentConfig builds a watch from one entry of a Consul agent's
// "watches" config: the watch's parameters and its handler, "handler_type"
// "script" (with "args", run as they are, or the deprecated "handler", run
// by the shell) or "http" (with "http_handler_config": path, method,
// header, timeout, tls_skip_verify). The handler's output goes to stdout
// and stderr. The caller sets StateFile, Logger and the rest.
func FromAgentConfig(entry map[string]any, stdout, stderr io.Writer) (Config, error) {
	params := clone(entry)
	plan, err := watch.ParseExempt(clone(entry), []string{"handler", "args"})
	if err != nil {
		return Config{}, err
	}
	for _, k := range []string{"handler_type", "handler", "args", "http_handler_config"} {
		delete(params, k)
	}
	cfg := Config{Params: params}
	switch plan.HandlerType {
	case "http":
		hc, _ := plan.Exempt["http_handler_config"].(*watch.HttpHandlerConfig)
		if hc == nil {
			return Config{}, errors.New("handler type 'http' requires 'http_handler_config' to be set")
		}
		cfg.Handler = NewHTTP(hc.Path, hc.Method, hc.Header, hc.Timeout, hc.TLSSkipVerify)
	case "", "script":
		args, err := stringList(plan.Exempt["args"])
		if err != nil {
			return Config{}, err
		}
		handler, _ := plan.Exempt["handler"].(string)
		switch {
		case len(args) > 0 && handler != "":
			return Config{}, errors.New("only one of 'args' or 'handler' may be set")
		case len(args) > 0:
			cfg.Handler = &Script{Args: args, Stdout: stdout, Stderr: stderr}
		case handler != "":
			cfg.Handler = &Script{Args: []string{handler}, Shell: true, Stdout: stdout, Stderr: stderr}
		default:
			return Config{}, errors.New("a script watch needs 'args' (or 'handler')")
		}
	default:
		return Config{}, fmt.Errorf("handler type %q: want script or http", plan.HandlerType)
	}
	return cfg, nil
}

func stringList(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []string:
		return x, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("'args' must be a list of strings, has %T", e)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("'args' must be a list of strings, is %T", v)
}

// HTTP sends each result to a URL, as a Consul agent's http watch handler:
// the JSON as the body, X-Consul-Index as a header; a 2xx answer is success.
type HTTP struct {
	URL    string
	Method string
	Header map[string][]string
	client *http.Client
}

// NewHTTP returns an HTTP handler (method default POST, timeout default
// 10s).
func NewHTTP(url, method string, header map[string][]string, timeout time.Duration, skipVerify bool) *HTTP {
	if method == "" {
		method = http.MethodPost
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if skipVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // tls_skip_verify: the operator asked for it
	}
	return &HTTP{URL: url, Method: method, Header: header, client: &http.Client{Timeout: timeout, Transport: tr}}
}

// Handle sends body.
func (h *HTTP) Handle(ctx context.Context, index uint64, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, h.Method, h.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("http handler %s: %w", h.URL, err)
	}
	for k, vs := range h.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Consul-Index", strconv.FormatUint(index, 10))
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("http handler: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("http handler %s %s: %s", h.Method, h.URL, resp.Status)
	}
	return nil
}
