package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// KVOptions configure a KV benchmark.
type KVOptions struct {
	Addr      string // host:port of the HTTP API
	Token     string // sent as X-Consul-Token when set
	Writers   int
	Readers   int
	Duration  time.Duration // of each phase
	ValueSize int
	Keys      int    // distinct keys written and read
	Prefix    string // every key lives under it; removed at the end
	// ServerPID, when set, is the server's process (on this machine): its
	// resident memory is sampled during each phase (Linux /proc).
	ServerPID int
}

func (o *KVOptions) validate() error {
	switch {
	case o.Addr == "":
		return errors.New("bench: an address is required")
	case o.Writers < 0 || o.Readers < 0 || o.Writers+o.Readers == 0:
		return fmt.Errorf("bench: writers %d, readers %d: need at least one worker", o.Writers, o.Readers)
	case o.Duration <= 0:
		return fmt.Errorf("bench: duration %s must be positive", o.Duration)
	case o.ValueSize < 0 || o.ValueSize > 512*1024:
		return fmt.Errorf("bench: value size %d must be 0..524288", o.ValueSize)
	case o.Keys <= 0:
		return fmt.Errorf("bench: keys %d must be positive", o.Keys)
	case o.Prefix == "":
		return errors.New("bench: a key prefix is required")
	}
	return checkServerPID(o.ServerPID)
}

// checkServerPID refuses a server pid that is negative, or whose resident
// memory cannot be read.
func checkServerPID(pid int) error {
	if pid < 0 {
		return fmt.Errorf("bench: server pid %d must be positive", pid)
	}
	if pid > 0 {
		if _, err := readRSS(pid); err != nil {
			return fmt.Errorf("bench: server pid %d: %w", pid, err)
		}
	}
	return nil
}

// Result is what one phase measured.
type Result struct {
	Op      string // PUT or GET
	Workers int
	Ops     int64 // successful operations
	Errors  int64
	Elapsed time.Duration
	P50     time.Duration
	P90     time.Duration
	P99     time.Duration
	Max     time.Duration
	// With KVOptions.ServerPID: the server's largest resident set seen during
	// the phase, and the last one, at its end (bytes).
	PeakRSS, EndRSS uint64
}

// Rate is successful operations a second.
func (r Result) Rate() float64 { return float64(r.Ops) / r.Elapsed.Seconds() }

func (r Result) String() string {
	s := fmt.Sprintf("%-3s %4d workers %8d ops in %5.1fs  %9.0f/s  p50 %-9s p90 %-9s p99 %-9s max %-9s errors %d",
		r.Op, r.Workers, r.Ops, r.Elapsed.Seconds(), r.Rate(), round(r.P50), round(r.P90), round(r.P99), round(r.Max), r.Errors)
	if r.PeakRSS > 0 {
		s += fmt.Sprintf("  server RSS peak %.1f MB, at end %.1f MB", float64(r.PeakRSS)/1e6, float64(r.EndRSS)/1e6)
	}
	return s
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// RunKV writes for one Duration with Writers workers, then reads for one
// Duration with Readers workers, then deletes its keys.
func RunKV(ctx context.Context, o KVOptions) ([]Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	value := make([]byte, o.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var out []Result
	if o.Writers > 0 {
		res, err := phase(ctx, o, "PUT", o.Writers, value)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	} else if err := fill(ctx, o, value); err != nil {
		return nil, err
	}
	if o.Readers > 0 {
		res, err := phase(ctx, o, "GET", o.Readers, nil)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	if err := cleanup(o); err != nil {
		return out, err
	}
	return out, nil
}

// conn is one keep-alive HTTP/1.1 connection.
type conn struct {
	addr, token string
	c           net.Conn
	br          *bufio.Reader
	bw          *bufio.Writer
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// do sends one request and returns the status code.
func (c *conn) do(method, path string, body []byte) (int, error) {
	if err := c.send(method, path, body); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	return resp.StatusCode, err
}

// send writes one request, dialling first if needed.
func (c *conn) send(method, path string, body []byte) error {
	if c.c == nil {
		nc, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return err
		}
		c.c, c.br, c.bw = nc, bufio.NewReaderSize(nc, 16<<10), bufio.NewWriterSize(nc, 16<<10)
	}
	bw := c.bw
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(c.addr)
	if c.token != "" {
		bw.WriteString("\r\nX-Consul-Token: ")
		bw.WriteString(c.token)
	}
	if body != nil {
		bw.WriteString("\r\nContent-Length: ")
		bw.WriteString(strconv.Itoa(len(body)))
	}
	bw.WriteString("\r\n\r\n")
	bw.Write(body)
	if err := bw.Flush(); err != nil {
		c.close()
		return err
	}
	return nil
}

func keyPath(o KVOptions, n int) string {
	return "/v1/kv/" + o.Prefix + strconv.Itoa(n)
}

func fill(ctx context.Context, o KVOptions, value []byte) error {
	c := &conn{addr: o.Addr, token: o.Token}
	defer c.close()
	for n := 0; n < o.Keys; n++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		code, err := c.do(http.MethodPut, keyPath(o, n), value)
		if err != nil {
			return fmt.Errorf("bench: fill %s: %w", keyPath(o, n), err)
		}
		if code != http.StatusOK {
			return fmt.Errorf("bench: fill %s: status %d", keyPath(o, n), code)
		}
	}
	return nil
}

func cleanup(o KVOptions) error {
	c := &conn{addr: o.Addr, token: o.Token}
	defer c.close()
	code, err := c.do(http.MethodDelete, "/v1/kv/"+o.Prefix+"?recurse", nil)
	if err != nil {
		return fmt.Errorf("bench: clean up %s: %w", o.Prefix, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("bench: clean up %s: status %d", o.Prefix, code)
	}
	return nil
}

func phase(ctx context.Context, o KVOptions, op string, workers int, value []byte) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errs     atomic.Int64
		mu       sync.Mutex
		lats     []time.Duration
		firstErr error
	)
	var rss rssSampler
	if o.ServerPID > 0 {
		rss.start(o.ServerPID, 100*time.Millisecond)
	}
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &conn{addr: o.Addr, token: o.Token}
			defer c.close()
			mine := make([]time.Duration, 0, 4096)
			method := http.MethodGet
			if value != nil {
				method = http.MethodPut
			}
			for n := w; ctx.Err() == nil; n += workers {
				t0 := time.Now()
				code, err := c.do(method, keyPath(o, n%o.Keys), value)
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("%s %s: status %d", method, keyPath(o, n%o.Keys), code)
				}
				if err != nil {
					if errs.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res := Result{Op: op, Workers: workers, Ops: int64(len(lats)), Errors: errs.Load(), Elapsed: time.Since(start)}
	if o.ServerPID > 0 {
		res.PeakRSS, res.EndRSS = rss.stop()
	}
	if len(lats) == 0 {
		if firstErr == nil {
			firstErr = errors.New("no operation completed")
		}
		return res, fmt.Errorf("bench: %s: %w", op, firstErr)
	}
	res.P50, res.P90, res.P99, res.Max = percentiles(lats)
	return res, nil
}

// percentiles sorts lats (not empty) and returns p50, p90, p99 and max.
func percentiles(lats []time.Duration) (p50, p90, p99, max time.Duration) {
	slices.Sort(lats)
	at := func(p float64) time.Duration { return lats[int(p*float64(len(lats)-1))] }
	return at(0.50), at(0.90), at(0.99), lats[len(lats)-1]
}
