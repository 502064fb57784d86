package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"strconv"
)

// doIndexed sends one request and returns the status code and the answer's
// X-Consul-Index (0 when absent). It reads the answer with a lean parser of
// its own rather than net/http's: a thousand watchers answered at once on
// the server's machine must cost the benchmark as little CPU as it can,
// since in a real fleet they run on other machines.
func (c *conn) doIndexed(method, path string, body []byte) (int, uint64, error) {
	if err := c.send(method, path, body); err != nil {
		return 0, 0, err
	}
	code, index, err := c.readResponse()
	if err != nil {
		c.close()
	}
	return code, index, err
}

var errBadResponse = errors.New("bench: malformed HTTP response")

// readResponse reads a status line, the headers it needs and the body.
func (c *conn) readResponse() (int, uint64, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, 0, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, 0, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	var (
		index   uint64
		length  int64 = -1
		chunked bool
		closing bool
	)
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return 0, 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("X-Consul-Index")):
			index, _ = strconv.ParseUint(string(value), 10, 64)
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, _ = strconv.ParseInt(string(value), 10, 64)
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		_, err = io.Copy(io.Discard, httputil.NewChunkedReader(c.br))
	case length >= 0:
		_, err = c.br.Discard(int(length))
	default:
		return code, index, fmt.Errorf("%w: no length", errBadResponse)
	}
	if err == nil && closing {
		c.close()
	}
	return code, index, err
}
