package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/transport"
	"github.com/kvxproject/kvx/pkg/watch"
)

// FanoutOptions configure a fan-out benchmark.
type FanoutOptions struct {
	Addr    string // host:port of the HTTP API (comma-separated: the nodes are spread over them, the pushes go to the first)
	Token   string
	Nodes   int           // simulated nodes, each with its own connection
	Size    int           // bytes of the file pushed
	Rounds  int           // measured pushes
	Timeout time.Duration // per round: nodes that have not delivered by then count as missing
	Dir     string        // where the nodes write their files; default a temp dir (in /dev/shm if present), removed after
	Key     string        // the kvx key used, removed after
	Prefix  string        // KV prefix; default transport.DefaultPrefix
	Ack     bool          // nodes acknowledge, as kvx out does
	// AckJitter spreads the acknowledgement PUTs (against Consul) and
	// AckDelay holds the next query carrying one (against a kvx server),
	// as kvx out --watch does.
	AckJitter, AckDelay time.Duration
	// Client is how the nodes follow the file: "kvx" (the kvx out --watch
	// code) or "consul" (what the Consul clients fleets run do: a blocking
	// GET on the checksum key, then a GET of the data as JSON, verified
	// against the checksum; no acknowledgement).
	Client string
	// Stale makes the nodes read with ?stale, each from the server it was
	// given (kvx out -stale).
	Stale bool
	// ServerPIDs, when set, are the servers' processes on this machine:
	// their CPU time (summed) and the first's resident set over the
	// measured rounds are reported.
	ServerPIDs []int
}

// FanoutServer is what the server spent over the measured rounds.
type FanoutServer struct {
	CPU        time.Duration // user + system time over the measured rounds
	NodesCPU   time.Duration // this process's (the simulated nodes' and the harness's, its collections between rounds included), same span
	Deliveries int
	RSSPeak    uint64
	RSSEnd     uint64
}

// PerDelivery is the server's CPU time per delivery.
func (s FanoutServer) PerDelivery() time.Duration {
	if s.Deliveries == 0 {
		return 0
	}
	return s.CPU / time.Duration(s.Deliveries)
}

func (s FanoutServer) String() string {
	nodes := time.Duration(0)
	if s.Deliveries > 0 {
		nodes = s.NodesCPU / time.Duration(s.Deliveries)
	}
	return fmt.Sprintf("server: CPU %v per delivery (%v over %d deliveries), RSS peak %.0f MB, end %.0f MB; this process (nodes and harness): CPU %v per delivery",
		s.PerDelivery().Round(time.Microsecond), s.CPU.Round(time.Millisecond), s.Deliveries, float64(s.RSSPeak)/1e6, float64(s.RSSEnd)/1e6,
		nodes.Round(time.Microsecond))
}

// FanoutRound is what one push measured: from the start of the push to each
// node's rename of its file.
type FanoutRound struct {
	Round, Nodes, Delivered int
	Push                    time.Duration // the push itself, kvx in's part
	First                   time.Duration // the first node's delivery
	P50, P90, P99, Max      time.Duration

	lats []time.Duration
}

// Pooled sums up rounds as one: every delivery of every round in one
// distribution (Round 0; Push and First are the worst round's).
func Pooled(rounds []FanoutRound) FanoutRound {
	var all FanoutRound
	var lats []time.Duration
	for _, r := range rounds {
		all.Nodes += r.Nodes
		all.Delivered += r.Delivered
		all.Push, all.First = max(all.Push, r.Push), max(all.First, r.First)
		lats = append(lats, r.lats...)
	}
	if len(lats) > 0 {
		all.P50, all.P90, all.P99, all.Max = percentiles(lats)
	}
	return all
}

func (r FanoutRound) String() string {
	if r.Round == 0 {
		return fmt.Sprintf("all rounds: delivered %d/%d  p50 %v  p90 %v  p99 %v  max %v",
			r.Delivered, r.Nodes, round(r.P50), round(r.P90), round(r.P99), round(r.Max))
	}
	return fmt.Sprintf("round %d: delivered %d/%d  push %v  first %v  p50 %v  p90 %v  p99 %v  max %v",
		r.Round, r.Delivered, r.Nodes, round(r.Push), round(r.First), round(r.P50), round(r.P90), round(r.P99), round(r.Max))
}

type fanNode struct {
	mu      sync.Mutex
	written map[string]time.Time // checksum -> when this node's file got it
	tally   *fanTally
}

// got records that this node's file has the checksum.
func (n *fanNode) got(sum string, at time.Time) {
	n.mu.Lock()
	_, had := n.written[sum]
	if !had {
		n.written[sum] = at
	}
	n.mu.Unlock()
	if !had {
		n.tally.add(sum)
	}
}

// fanTally counts the nodes that have each checksum and says when all do,
// so that the harness waits for a round without polling a thousand nodes.
type fanTally struct {
	mu     sync.Mutex
	nodes  int
	counts map[string]int
	full   map[string]chan struct{}
}

func (t *fanTally) add(sum string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts[sum]++; t.counts[sum] == t.nodes {
		close(t.fullLocked(sum))
	}
}

// all is closed when every node has sum.
func (t *fanTally) all(sum string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fullLocked(sum)
}

func (t *fanTally) fullLocked(sum string) chan struct{} {
	ch, ok := t.full[sum]
	if !ok {
		ch = make(chan struct{})
		t.full[sum] = ch
	}
	return ch
}

// RunFanout starts o.Nodes simulated kvx out --watch nodes (the real
// delivery code, each on its own connection, each writing a real file),
// pushes a file of o.Size bytes o.Rounds times, and measures how long each
// node took. A warm-up push first makes every node hold a file.
func RunFanout(ctx context.Context, o FanoutOptions) ([]FanoutRound, error) {
	rounds, _, err := RunFanoutServer(ctx, o)
	return rounds, err
}

// RunFanoutServer is RunFanout that also reports, with o.ServerPIDs, what
// the server spent over the measured rounds.
func RunFanoutServer(ctx context.Context, o FanoutOptions) ([]FanoutRound, FanoutServer, error) {
	var srv FanoutServer
	switch {
	case o.Addr == "":
		return nil, srv, errors.New("bench: an address is required")
	case o.Nodes <= 0 || o.Rounds <= 0 || o.Size <= 0:
		return nil, srv, fmt.Errorf("bench: nodes %d, rounds %d, size %d must all be positive", o.Nodes, o.Rounds, o.Size)
	case o.Client != "" && o.Client != "kvx" && o.Client != "consul":
		return nil, srv, fmt.Errorf("bench: client %q: want kvx or consul", o.Client)
	}
	if o.Client == "consul" {
		o.Ack = false // the Consul clients acknowledge nothing
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Key == "" {
		o.Key = fmt.Sprintf("kvx-bench/fanout-%d", time.Now().UnixNano())
	}
	if o.Dir == "" {
		// The simulated fleet shares one disk, where a thousand fsyncs queue
		// behind each other; on a real fleet each node fsyncs its own. So
		// the files go to memory (tmpfs) when the machine has one.
		base := ""
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			base = "/dev/shm"
		}
		dir, err := os.MkdirTemp(base, "kvx-fanout-")
		if err != nil {
			return nil, srv, err
		}
		defer os.RemoveAll(dir)
		o.Dir = dir
	}
	addrs := strings.Split(o.Addr, ",")
	newClient := func(node, addr string) (*transport.Client, error) {
		kv, err := client.NewKV(client.Options{Address: addr, Token: o.Token, Stale: o.Stale})
		if err != nil {
			return nil, err
		}
		return &transport.Client{KV: kv, Prefix: o.Prefix, Node: node}, nil
	}
	pusher, err := newClient("bench-pusher", addrs[0])
	if err != nil {
		return nil, srv, err
	}
	defer cleanupFanout(pusher, o)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nodes := make([]*fanNode, o.Nodes)
	tally := &fanTally{nodes: o.Nodes, counts: map[string]int{}, full: map[string]chan struct{}{}}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wo := watch.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second}
	prefix := o.Prefix
	if prefix == "" {
		prefix = transport.DefaultPrefix
	}
	layout, err := transport.NewLayout(prefix, o.Key)
	if err != nil {
		return nil, srv, err
	}
	var (
		cpuStart, nodesStart time.Duration
		rss                  rssSampler
	)
	for i := range nodes {
		n := &fanNode{written: map[string]time.Time{}, tally: tally}
		nodes[i] = n
		if o.Client == "consul" {
			c, err := client.New(client.Options{Address: addrs[i%len(addrs)], Token: o.Token})
			if err != nil {
				return nil, srv, err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				followAsConsulClient(ctx, c.KV(), layout, n, o.Stale)
			}()
			continue
		}
		c, err := newClient(fmt.Sprintf("bench-%05d", i), addrs[i%len(addrs)])
		if err != nil {
			return nil, srv, err
		}
		do := transport.DeliverOptions{Key: o.Key, Path: filepath.Join(o.Dir, fmt.Sprintf("node-%05d", i), "file"), NoAck: !o.Ack, AckJitter: o.AckJitter, AckDelay: o.AckDelay}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Watch(ctx, do, wo, func(d transport.Delivery) {
				if d.Result == transport.ResultDelivered {
					n.got(d.Checksum, d.Written)
				}
			})
		}()
	}
	var out []FanoutRound
	const settle = 250 * time.Millisecond // > the server's ack batch window (100 ms)
	for r := 0; r <= o.Rounds; r++ {
		if r > 0 {
			// Let the fleet settle before the next push (real pushes are
			// minutes apart). A node reports a delivery once it has
			// acknowledged it, by PUT or by handing it to its next query,
			// so the round's acknowledgements are in: settle is for the
			// server's batch of them to land.
			time.Sleep(settle)
		}
		// The simulated fleet shares this process's heap (hundreds of MB at
		// 5,000 nodes); a collection of it landing mid-round would measure
		// the harness, not delivery, since real nodes each collect their
		// own small heap. Collect now, between rounds.
		runtime.GC()
		if r == 1 && len(o.ServerPIDs) > 0 {
			if cpuStart, err = readCPUs(o.ServerPIDs); err != nil {
				return out, srv, err
			}
			if nodesStart, err = readCPU(os.Getpid()); err != nil {
				return out, srv, err
			}
			rss.start(o.ServerPIDs[0], 50*time.Millisecond)
		}
		content := fanoutContent(o.Size, r)
		start := time.Now()
		res, err := pusher.Push(ctx, transport.PushOptions{Key: o.Key, Content: content})
		pushed := time.Since(start)
		if err != nil {
			return out, srv, fmt.Errorf("bench: push round %d: %w", r, err)
		}
		lats := waitDelivered(ctx, nodes, res.Checksum, start, o.Timeout)
		if r == 0 {
			if len(lats) != o.Nodes {
				return out, srv, fmt.Errorf("bench: warm-up: only %d of %d nodes got the file within %v", len(lats), o.Nodes, o.Timeout)
			}
			continue // the warm-up push is not measured
		}
		fr := FanoutRound{Round: r, Nodes: o.Nodes, Delivered: len(lats), Push: pushed, lats: lats}
		if len(lats) > 0 {
			fr.P50, fr.P90, fr.P99, fr.Max = percentiles(lats)
			fr.First = lats[0] // sorted by percentiles
		}
		out = append(out, fr)
		srv.Deliveries += len(lats)
	}
	// The last round's acknowledgements are the server's work too.
	time.Sleep(settle)
	if len(o.ServerPIDs) > 0 {
		cpu, err := readCPUs(o.ServerPIDs)
		if err != nil {
			return out, srv, err
		}
		srv.CPU = cpu - cpuStart
		nodes, err := readCPU(os.Getpid())
		if err != nil {
			return out, srv, err
		}
		srv.NodesCPU = nodes - nodesStart
		srv.RSSPeak, srv.RSSEnd = rss.stop()
	}
	return out, srv, nil
}

// waitDelivered waits until every node has the checksum or the timeout
// passes, and returns the latencies of those that have it.
func waitDelivered(ctx context.Context, nodes []*fanNode, sum string, start time.Time, timeout time.Duration) []time.Duration {
	if len(nodes) > 0 {
		t := time.NewTimer(time.Until(start.Add(timeout)))
		select {
		case <-nodes[0].tally.all(sum):
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	lats := make([]time.Duration, 0, len(nodes))
	for _, n := range nodes {
		n.mu.Lock()
		if t, ok := n.written[sum]; ok {
			lats = append(lats, t.Sub(start))
		}
		n.mu.Unlock()
	}
	return lats
}

// followAsConsulClient follows the file as the Consul clients fleets run
// do (kvexpress, consul-template, envconsul): a blocking GET on the
// checksum key; when it changes, a GET of the data (JSON, base64), whose
// SHA-256 must be the checksum. A verified version counts as delivered.
func followAsConsulClient(ctx context.Context, kv *consulapi.KV, l transport.Layout, n *fanNode, stale bool) {
	var index uint64
	for ctx.Err() == nil {
		sum, meta, err := kv.Get(l.Checksum(), (&consulapi.QueryOptions{WaitIndex: index, WaitTime: time.Minute, AllowStale: stale}).WithContext(ctx))
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if meta.LastIndex == index || sum == nil {
			index = meta.LastIndex
			continue
		}
		data, _, err := kv.Get(l.Data(), (&consulapi.QueryOptions{AllowStale: stale}).WithContext(ctx))
		if err != nil || data == nil || checksum.Of(data.Value) != string(sum.Value) {
			time.Sleep(50 * time.Millisecond)
			continue // asked again: the index is not taken
		}
		index = meta.LastIndex
		n.got(string(sum.Value), time.Now())
	}
}

// fanoutContent is a hosts-like file of about size bytes, different each
// round.
func fanoutContent(size, round int) []byte {
	b := make([]byte, 0, size+64)
	for i := 0; len(b) < size; i++ {
		b = fmt.Appendf(b, "10.%d.%d.%d node-%d.round-%d.example\n", round%250, i/250%250, i%250, i, round)
	}
	return b[: size-1 : size-1]
}

func cleanupFanout(c *transport.Client, o FanoutOptions) {
	prefix := o.Prefix
	if prefix == "" {
		prefix = transport.DefaultPrefix
	}
	if kv, ok := c.KV.(interface {
		DeleteTree(string, *consulapi.WriteOptions) (*consulapi.WriteMeta, error)
	}); ok {
		kv.DeleteTree(prefix+"/"+o.Key+"/", nil)
	}
}
