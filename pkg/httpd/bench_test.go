package httpd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The fan-out floor: N keep-alive clients (in a child process, so this
// process's CPU is the server's) each blocked in a GET on a broadcast
// channel; a round wakes them all, each gets a 40 kB answer with a
// Content-Length and comes back with its next blocking GET. Reported:
// the server process's CPU (user+system) per response, and its
// allocations per response.
//
//	go test -run '^$' -bench Fanout -benchtime 20x ./pkg/httpd
//	HTTPD_BENCH_CLIENTS=1000 (default) sets N.

const benchBody = 40000

func BenchmarkFanout(b *testing.B) {
	b.Run("httpd", func(b *testing.B) {
		benchFanout(b, func(ln net.Listener, h http.Handler) func() {
			s := &Server{Handler: h, IdleTimeout: time.Minute, ReadHeaderTimeout: 10 * time.Second}
			go s.Serve(ln)
			return func() { s.Close() }
		})
	})
	b.Run("floor", func(b *testing.B) { // a hand loop: what a request costs at least
		benchFanout(b, func(ln net.Listener, h http.Handler) func() {
			go floorServe(ln)
			return func() { ln.Close() }
		})
	})
	b.Run("net-http", func(b *testing.B) {
		benchFanout(b, func(ln net.Listener, h http.Handler) func() {
			s := &http.Server{Handler: h, IdleTimeout: time.Minute, ReadHeaderTimeout: 10 * time.Second}
			go s.Serve(ln)
			return func() { s.Close() }
		})
	})
}

func benchFanout(b *testing.B, serve func(net.Listener, http.Handler) func()) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("HTTPD_BENCH_CLIENTS")); err == nil && v > 0 {
		n = v
	}
	body := make([]byte, 0, benchBody)
	for i := 0; len(body) < benchBody; i++ {
		body = fmt.Appendf(body, "10.0.%d.%d node-%d.example\n", i/250%250, i%250, i)
	}
	body = body[:benchBody]
	var (
		mu      sync.Mutex
		ch      = make(chan struct{})
		waiting int
		served  atomic.Int64
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("index") != "" {
			mu.Lock()
			c := ch
			waiting++
			mu.Unlock()
			select {
			case <-c:
			case <-r.Context().Done():
				return
			}
		}
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
		w.Header()["X-Consul-Index"] = []string{"123"}
		w.Write(body)
		served.Add(1)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	floorHandler = h
	stop := serve(ln, h)
	defer stop()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFanoutClients$", "-test.v")
	cmd.Env = append(os.Environ(), "HTTPD_BENCH_ADDR="+ln.Addr().String(), "HTTPD_BENCH_N="+strconv.Itoa(n))
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	allWaiting := func() {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			mu.Lock()
			w := waiting
			mu.Unlock()
			if w >= n {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d clients waiting", w, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	allWaiting()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0, served0 := cpuTime(), served.Load()
	b.ResetTimer()
	for range b.N {
		mu.Lock()
		close(ch)
		ch = make(chan struct{})
		waiting = 0
		mu.Unlock()
		allWaiting()
	}
	b.StopTimer()
	cpu1, served1 := cpuTime(), served.Load()
	runtime.ReadMemStats(&ms1)
	resp := float64(served1 - served0)
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/resp, "server-µs/resp")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/resp, "allocs/resp")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/resp, "B/resp")
}

// floorServe is /tmp/floor's hand loop: a goroutine per connection, the
// request line looked at, the headers skipped, the answer's head and body
// in one writev; the blocking and counting done by the same handler.
var floorHandler http.Handler

func floorServe(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReaderSize(c, 4096)
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				_, rest, _ := strings.Cut(string(line), " ")
				uri, _, _ := strings.Cut(rest, " ")
				for {
					l, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(l) <= 2 {
						break
					}
				}
				r := &http.Request{Method: "GET", URL: &url.URL{}, Header: http.Header{}}
				r.URL, _ = url.ParseRequestURI(uri)
				w := &floorWriter{h: http.Header{}, c: c}
				floorHandler.ServeHTTP(w, r.WithContext(context.Background()))
			}
		}()
	}
}

type floorWriter struct {
	h    http.Header
	c    net.Conn
	head []byte
}

func (w *floorWriter) Header() http.Header { return w.h }
func (w *floorWriter) WriteHeader(int)     {}
func (w *floorWriter) Write(p []byte) (int, error) {
	w.head = append(w.head[:0], "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 123\r\nContent-Length: "...)
	w.head = strconv.AppendInt(w.head, int64(len(p)), 10)
	w.head = append(w.head, "\r\n\r\n"...)
	bufs := net.Buffers{w.head, p}
	_, err := bufs.WriteTo(w.c)
	return len(p), err
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestFanoutClients is BenchmarkFanout's client process (it does nothing
// in a normal test run).
func TestFanoutClients(t *testing.T) {
	addr := os.Getenv("HTTPD_BENCH_ADDR")
	if addr == "" {
		t.Skip("the fan-out benchmark's clients")
	}
	n, _ := strconv.Atoi(os.Getenv("HTTPD_BENCH_N"))
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	hc := &http.Client{Transport: tr}
	url := "http://" + addr + "/v1/kv/checksum?index=5&wait=10m"
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for {
				resp, err := hc.Get(url)
				if err != nil {
					return // the server went away: the benchmark is over
				}
				buf.Reset()
				m, err := io.Copy(&buf, resp.Body)
				resp.Body.Close()
				if err != nil || m != benchBody {
					t.Errorf("client: %d bytes, %v", m, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
