package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// DNSOptions configure a DNS benchmark.
type DNSOptions struct {
	Addr    string // HTTP API, for registering the instances
	Token   string
	DNSAddr string // the DNS interface (UDP)
	Domain  string // default "consul."
	// Instances of Service registered (each on its own node, passing) before
	// and deregistered after; 0 queries an existing Service.
	Instances int
	Service   string
	Clients   int // each its own UDP socket, one query outstanding
	Duration  time.Duration
	Timeout   time.Duration // a query unanswered after this is lost
}

// DNSResult is what a DNS benchmark measured.
type DNSResult struct {
	Queries, Lost, Errors int64
	Answers               int // records in the first answer
	Elapsed               time.Duration
	P50, P90, P99, Max    time.Duration
}

func (r DNSResult) String() string {
	return fmt.Sprintf("dns       %d queries in %.1fs: %.0f/s, p50 %s p90 %s p99 %s max %s, %d answers each, lost %d, errors %d",
		r.Queries, r.Elapsed.Seconds(), float64(r.Queries)/r.Elapsed.Seconds(), round(r.P50), round(r.P90), round(r.P99), round(r.Max),
		r.Answers, r.Lost, r.Errors)
}

// RunDNS registers the instances, then sends A queries for
// <Service>.service.<Domain> over UDP from Clients sockets for Duration,
// each waiting for its answer before the next query (a closed loop), and
// measures the answers' latencies.
func RunDNS(ctx context.Context, o DNSOptions) (DNSResult, error) {
	var res DNSResult
	switch {
	case o.DNSAddr == "" || o.Service == "":
		return res, errors.New("bench: a DNS address and a service are required")
	case o.Clients <= 0 || o.Duration <= 0 || o.Instances < 0:
		return res, errors.New("bench: clients and duration must be positive, instances not negative")
	}
	if o.Domain == "" {
		o.Domain = "consul."
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Instances > 0 {
		defer cleanupDNS(o)
		if err := registerDNS(o); err != nil {
			return res, err
		}
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(o.Service+".service."+dns.Fqdn(o.Domain)), dns.TypeA)
	query, err := m.Pack()
	if err != nil {
		return res, err
	}
	addr, err := net.ResolveUDPAddr("udp", o.DNSAddr)
	if err != nil {
		return res, err
	}
	// One answer, checked in full, before the clock starts.
	r, err := dns.Exchange(m, o.DNSAddr)
	if err != nil {
		return res, fmt.Errorf("bench: first query: %w", err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return res, fmt.Errorf("bench: %s answered %s with %d records", m.Question[0].Name, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	res.Answers = len(r.Answer)

	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var (
		mu             sync.Mutex
		lats           []time.Duration
		lost, errCount atomic.Int64
		wg             sync.WaitGroup
	)
	start := time.Now()
	for c := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialUDP("udp", nil, addr)
			if err != nil {
				errCount.Add(1)
				return
			}
			defer conn.Close()
			q := append([]byte{}, query...)
			buf := make([]byte, 65536)
			mine := make([]time.Duration, 0, 1<<16)
			id := uint16(c << 10)
			for ctx.Err() == nil {
				id++
				binary.BigEndian.PutUint16(q, id)
				t0 := time.Now()
				if _, err := conn.Write(q); err != nil {
					errCount.Add(1)
					continue
				}
				conn.SetReadDeadline(t0.Add(o.Timeout))
				for {
					n, err := conn.Read(buf)
					if err != nil {
						lost.Add(1)
						break
					}
					if n < 12 || binary.BigEndian.Uint16(buf) != id {
						continue // a late answer to a lost query
					}
					if buf[3]&0x0f != dns.RcodeSuccess || binary.BigEndian.Uint16(buf[6:]) == 0 {
						errCount.Add(1)
					} else {
						mine = append(mine, time.Since(t0))
					}
					break
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Queries, res.Lost, res.Errors = int64(len(lats)), lost.Load(), errCount.Load()
	if len(lats) > 0 {
		res.P50, res.P90, res.P99, res.Max = percentiles(lats)
	}
	return res, nil
}

func dnsNode(o DNSOptions, i int) string { return o.Service + "-node-" + strconv.Itoa(i) }

func registerDNS(o DNSOptions) error {
	c := &conn{addr: o.Addr, token: o.Token}
	defer c.close()
	for i := range o.Instances {
		body := fmt.Sprintf(`{"Node":%q,"Address":"10.254.%d.%d","Service":{"ID":%q,"Service":%q,"Port":80},`+
			`"Check":{"CheckID":"service:%s","Name":"bench check","ServiceID":%q,"Status":"passing"}}`,
			dnsNode(o, i), i>>8&255, i&255, o.Service, o.Service, o.Service, o.Service)
		if code, err := c.do("PUT", "/v1/catalog/register", []byte(body)); err != nil || code != 200 {
			return fmt.Errorf("bench: register instance %d: status %d, %v", i, code, err)
		}
	}
	return nil
}

func cleanupDNS(o DNSOptions) {
	c := &conn{addr: o.Addr, token: o.Token}
	defer c.close()
	for i := range o.Instances {
		_, _ = c.do("PUT", "/v1/catalog/deregister", []byte(fmt.Sprintf(`{"Node":%q}`, dnsNode(o, i))))
	}
}
