package transport

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// bigFile is size bytes of text lines that do not compress away.
func bigFile(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, size)
	for i := range b {
		if i%64 == 63 {
			b[i] = '\n'
		} else {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
	}
	return b
}

func chunkKeys(t *testing.T, srv *servertest.Server, key string) []string {
	t.Helper()
	keys, _, err := srv.Client.KV().Keys("kvx/"+key+"/chunks/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestChunkedReadWhilePushing(t *testing.T) {
	srv := servertest.Start(t)
	pusher := newClient(srv, "pusher")
	const size = 20 << 20
	versions := [][]byte{bigFile(size, 1), bigFile(size, 2), bigFile(size, 3)}
	res := mustPush(t, pusher, PushOptions{Key: "big/file", Content: versions[0]})
	if res.Chunks != size/ChunkSize {
		t.Fatalf("chunks = %d, want %d", res.Chunks, size/ChunkSize)
	}
	p, _, _ := srv.Client.KV().Get("kvx/big/file/data", nil)
	if p.Flags&FlagManifest == 0 || len(p.Value) > 64<<10 {
		t.Fatalf("data is not a manifest: flags %#x, %d bytes", p.Flags, len(p.Value))
	}

	reader := newClient(srv, "reader")
	stop := make(chan struct{})
	var (
		wg    sync.WaitGroup
		reads int
		seen  = map[int]bool{}
		rerr  error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := reader.Fetch(ctx, "big/file")
			if err != nil {
				rerr = err
				return
			}
			match := -1
			for i, v := range versions {
				if bytes.Equal(b, v) {
					match = i
				}
			}
			if match < 0 {
				rerr = errors.New("read a file that is none of the versions pushed")
				return
			}
			seen[match] = true
			reads++
		}
	}()
	for _, v := range append(versions[1:], versions[0]) {
		mustPush(t, pusher, PushOptions{Key: "big/file", Content: v})
	}
	close(stop)
	wg.Wait()
	if rerr != nil {
		t.Fatalf("after %d reads: %v", reads, rerr)
	}
	if reads == 0 {
		t.Fatal("no read completed while pushing")
	}
	t.Logf("%d whole reads during 3 pushes; versions seen %v", reads, seen)
	// Only the current and the previous version's chunks are kept.
	if got, want := len(chunkKeys(t, srv, "big/file")), 2*size/ChunkSize; got != want {
		t.Fatalf("%d chunks left, want %d (current and previous)", got, want)
	}
	// And the delivered file is the current version.
	path := filepath.Join(t.TempDir(), "big")
	if d := reader.Deliver(ctx, DeliverOptions{Key: "big/file", Path: path}); d.Err != nil || !bytes.Equal(readFile(t, path), versions[0]) {
		t.Fatalf("deliver: %+v", d)
	}
}

func TestChunkedCompressedAndCorrupt(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "n")
	content := bigFile(3<<20, 7)
	res := mustPush(t, c, PushOptions{Key: "cz/file", Content: content, Codec: Zstd})
	if res.Chunks == 0 || res.Stored >= len(content) {
		t.Fatalf("zstd chunked push: %+v", res)
	}
	got, err := c.Fetch(ctx, "cz/file")
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("fetch: %v", err)
	}
	// A chunk whose bytes do not match its name is refused, not delivered.
	keys := chunkKeys(t, srv, "cz/file")
	srv.Client.KV().Put(&consulapi.KVPair{Key: keys[0], Value: []byte("garbage")}, nil)
	path := filepath.Join(t.TempDir(), "f")
	d := c.Deliver(ctx, DeliverOptions{Key: "cz/file", Path: path})
	if d.Result != ResultRefused || refusalCode(d.Err) != RefusedMismatch {
		t.Fatalf("corrupt chunk: %+v", d)
	}
}

// gateKV holds the first write transaction until released: it makes two
// pushes overlap deterministically. Everything else goes to the real server.
type gateKV struct {
	*client.KV
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gateKV) Txn(ops consulapi.KVTxnOps, q *consulapi.QueryOptions) (bool, *consulapi.KVTxnResponse, *consulapi.QueryMeta, error) {
	for _, op := range ops {
		if op.Verb == consulapi.KVCAS {
			g.once.Do(func() { close(g.entered); <-g.release })
		}
	}
	return g.KV.Txn(ops, q)
}

func TestTwoPushersOneWins(t *testing.T) {
	for _, size := range []int{4 << 10, 2 << 20} { // inline and chunked
		srv := servertest.Start(t)
		mustPush(t, newClient(srv, "a"), PushOptions{Key: "race/f", Content: bigFile(size, 1)})
		gate := &gateKV{KV: newClient(srv, "").KV.(*client.KV), entered: make(chan struct{}), release: make(chan struct{})}
		slow := &Client{KV: gate, Node: "slow"}
		fast := newClient(srv, "fast")
		slowDone := make(chan error, 1)
		go func() {
			_, err := slow.Push(ctx, PushOptions{Key: "race/f", Content: bigFile(size, 2)})
			slowDone <- err
		}()
		<-gate.entered // slow has read the old checksum and is about to flip
		winner := bigFile(size, 3)
		mustPush(t, fast, PushOptions{Key: "race/f", Content: winner})
		close(gate.release)
		err := <-slowDone
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), checksum.Of(winner)) {
			t.Fatalf("size %d: the second pusher got %v, want a conflict naming the winner", size, err)
		}
		got, err := fast.Fetch(ctx, "race/f")
		if err != nil || !bytes.Equal(got, winner) {
			t.Fatalf("size %d: KV does not hold the winner cleanly: %v", size, err)
		}
		if size > InlineMax {
			// The loser's chunks are cleaned up: only winner and its predecessor remain.
			if n := len(chunkKeys(t, srv, "race/f")); n != 2*((size+ChunkSize-1)/ChunkSize) {
				t.Fatalf("%d chunks left after the race", n)
			}
		}
	}
}

func TestStopSetDuringPush(t *testing.T) {
	srv := servertest.Start(t)
	gate := &gateKV{KV: newClient(srv, "").KV.(*client.KV), entered: make(chan struct{}), release: make(chan struct{})}
	c := &Client{KV: gate, Node: "n"}
	done := make(chan error, 1)
	go func() {
		_, err := c.Push(ctx, PushOptions{Key: "sd/f", Content: lines(20, "x")})
		done <- err
	}()
	<-gate.entered
	if err := newClient(srv, "op").Stop(ctx, "sd/f", "incident"); err != nil {
		t.Fatal(err)
	}
	close(gate.release)
	if err := <-done; refusalCode(err) != RefusedStop {
		t.Fatalf("push that raced a stop: %v", err)
	}
	if p, _, _ := srv.Client.KV().Get("kvx/sd/f/checksum", nil); p != nil {
		t.Fatal("checksum written although the stop switch was set first")
	}
}

func TestDiffEventText(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "n")
	v1 := lines(100, "d")
	res := mustPush(t, c, PushOptions{Key: "diff/hosts", Content: v1, Diff: true})
	if !strings.HasPrefix(res.Diff, "New key: ") || strings.Contains(res.Diff, "host-5.d") {
		t.Fatalf("first push event text %q", res.Diff)
	}
	v2 := bytes.Replace(v1, []byte("host-50.d\n"), []byte("host-50.changed\n"), 1)
	res = mustPush(t, c, PushOptions{Key: "diff/hosts", Content: v2, Diff: true})
	if !strings.Contains(res.Diff, "-10.0.0.50 host-50.d\n+10.0.0.50 host-50.changed\n") {
		t.Fatalf("diff text:\n%s", res.Diff)
	}
	if strings.Contains(res.Diff, "host-10.d") || strings.HasPrefix(res.Diff, "---") {
		t.Fatalf("diff carries more than the change's context or its header:\n%s", res.Diff)
	}
	// A change of every line is capped, never the whole file.
	v3 := lines(100, "everything-changed")
	res = mustPush(t, c, PushOptions{Key: "diff/hosts", Content: v3, Diff: true, DiffMax: 500})
	if len(res.Diff) > 600 || !strings.Contains(res.Diff, "[diff truncated") {
		t.Fatalf("capped diff is %d bytes:\n%s", len(res.Diff), res.Diff)
	}
}

type recorded struct {
	name string
	tags []string
}

type recordSink struct {
	mu  sync.Mutex
	got []recorded
}

func (r *recordSink) add(name string, tags []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, recorded{name, tags})
}
func (r *recordSink) Count(name string, _ int64, tags ...string)          { r.add(name, tags) }
func (r *recordSink) Gauge(name string, _ float64, tags ...string)        { r.add(name, tags) }
func (r *recordSink) Timing(name string, _ time.Duration, tags ...string) { r.add(name, tags) }

func (r *recordSink) has(name string, tags ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
next:
	for _, g := range r.got {
		if g.name != name {
			continue
		}
		for _, want := range tags {
			found := false
			for _, t := range g.tags {
				found = found || t == want
			}
			if !found {
				continue next
			}
		}
		return true
	}
	return false
}

func TestMetrics(t *testing.T) {
	srv := servertest.Start(t)
	sink := &recordSink{}
	c := &Client{KV: srv.Client.KV(), Node: "web-9", Metrics: sink}
	mustPush(t, c, PushOptions{Key: "m/hosts", Content: lines(20, "m")})
	c.Push(ctx, PushOptions{Key: "m/hosts", Content: lines(2, "m"), MinLines: 5})
	c.Deliver(ctx, DeliverOptions{Key: "m/hosts", Path: filepath.Join(t.TempDir(), "h"), Command: "false"})
	for _, m := range []struct {
		name string
		tags []string
	}{
		{"in", []string{"key:m/hosts", "direction:in", "result:uploaded", "host:web-9"}},
		{"in", []string{"result:refused"}},
		{"bytes", []string{"direction:in"}},
		{"lines", []string{"direction:in"}},
		{"time", []string{"direction:in"}},
		{"out", []string{"direction:out", "result:command_failed", "host:web-9"}},
		{"time", []string{"direction:out"}},
	} {
		if !sink.has(m.name, m.tags...) {
			t.Errorf("no %s metric with %v", m.name, m.tags)
		}
	}
}

// downAfterFirstPut is the real client's KV with one twist: the real
// server is shut down as the first chunk is written.
type downAfterFirstPut struct {
	KV
	once sync.Once
	down func()
}

func (k *downAfterFirstPut) Put(p *consulapi.KVPair, w *consulapi.WriteOptions) (*consulapi.WriteMeta, error) {
	k.once.Do(k.down)
	return k.KV.Put(p, w)
}

// TestServerGoneDuringChunkedPush: a server that goes away during a
// chunked push gives one error line naming how many chunks were not
// written, not one line per chunk.
func TestServerGoneDuringChunkedPush(t *testing.T) {
	srv := servertest.Start(t)
	kv, err := client.NewKV(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{KV: &downAfterFirstPut{KV: kv, down: func() { srv.Server.Close() }}, Node: "n"}
	content := bigFile(45<<20, 9) // 180 chunks
	_, err = c.Push(ctx, PushOptions{Key: "gone/big", Content: content})
	if err == nil {
		t.Fatal("push to a server that went away succeeded")
	}
	msg := err.Error()
	if strings.Count(msg, "\n") > 0 || strings.Count(msg, "write chunk") != 1 || !strings.Contains(msg, "of 180 chunks not written") {
		t.Errorf("error is not one line with the count:\n%s", msg)
	}
}
