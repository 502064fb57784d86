package transport

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/servertest"
	"github.com/kvxproject/kvx/pkg/watch"
)

var ctx = context.Background()

// newClient is a node as kvx out builds it: pkg/client's KV, which reads
// file contents raw.
func newClient(srv *servertest.Server, node string) *Client {
	kv, err := client.NewKV(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		panic(err)
	}
	return &Client{KV: kv, Node: node}
}

// TestPlainAPIClient: the protocol also works over a bare *api.KV (data in
// the read transaction), and a raw reader falls back to that when the
// checksum key does not carry the data's flags (written by another tool).
func TestPlainAPIClient(t *testing.T) {
	srv := servertest.Start(t)
	bare := &Client{KV: srv.Client.KV(), Node: "bare"}
	content := lines(30, "bare")
	mustPush(t, bare, PushOptions{Key: "bare/f", Content: content, Codec: Zstd})
	path := filepath.Join(t.TempDir(), "f")
	if d := bare.Deliver(ctx, DeliverOptions{Key: "bare/f", Path: path}); d.Err != nil || !bytes.Equal(readFile(t, path), content) {
		t.Fatalf("bare client: %+v", d)
	}
	gz, flags, _ := encode(Gzip, content, false)
	kv := srv.Client.KV()
	kv.Put(&consulapi.KVPair{Key: "kvx/foreign/f/data", Value: gz, Flags: flags}, nil)
	kv.Put(&consulapi.KVPair{Key: "kvx/foreign/f/checksum", Value: []byte(checksum.Of(content))}, nil) // flags 0
	path = filepath.Join(t.TempDir(), "g")
	if d := newClient(srv, "raw").Deliver(ctx, DeliverOptions{Key: "foreign/f", Path: path}); d.Err != nil || !bytes.Equal(readFile(t, path), content) {
		t.Fatalf("raw client on unmirrored flags: %+v", d)
	}
}

func lines(n int, tag string) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "10.0.%d.%d host-%d.%s\n", i/250, i%250, i, tag)
	}
	return b.Bytes()
}

func mustPush(t *testing.T, c *Client, o PushOptions) PushResult {
	t.Helper()
	res, err := c.Push(ctx, o)
	if err != nil {
		t.Fatalf("push %s: %v", o.Key, err)
	}
	return res
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func refusalCode(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}

func TestPushDeliverCodecs(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "node-a")
	content := lines(200, "codec")
	for _, codec := range []Codec{Plain, Gzip, Zstd, Brotli} {
		t.Run(string(codec)+"_", func(t *testing.T) {
			key := "codec/" + string(codec) + "x"
			res := mustPush(t, c, PushOptions{Key: key, Content: content, Codec: codec})
			if !res.Uploaded || res.Checksum != checksum.Of(content) {
				t.Fatalf("push: %+v", res)
			}
			p, _, _ := srv.Client.KV().Get("kvx/"+key+"/data", nil)
			wantFlags := map[Codec]uint64{Plain: FlagPlain, Gzip: FlagGzip, Zstd: FlagZstd, Brotli: FlagBrotli}[codec]
			if p.Flags != wantFlags {
				t.Errorf("flags %d, want %d", p.Flags, wantFlags)
			}
			if codec != Plain && len(p.Value) >= len(content) {
				t.Errorf("stored %d bytes for %d of content: not compressed", len(p.Value), len(content))
			}
			path := filepath.Join(t.TempDir(), "out", "hosts")
			d := c.Deliver(ctx, DeliverOptions{Key: key, Path: path, MinLines: 10})
			if d.Err != nil || d.Result != ResultDelivered {
				t.Fatalf("deliver: %+v", d)
			}
			if !bytes.Equal(readFile(t, path), content) {
				t.Fatal("delivered file differs from the source")
			}
		})
	}
}

func TestPushNoReupload(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "n")
	content := lines(20, "a")
	mustPush(t, c, PushOptions{Key: "app/hosts", Content: content})
	p1, _, _ := srv.Client.KV().Get("kvx/app/hosts/checksum", nil)
	res := mustPush(t, c, PushOptions{Key: "app/hosts", Content: content})
	if res.Uploaded || res.Previous != res.Checksum {
		t.Fatalf("second push of the same content: %+v", res)
	}
	p2, _, _ := srv.Client.KV().Get("kvx/app/hosts/checksum", nil)
	if p2.ModifyIndex != p1.ModifyIndex {
		t.Fatalf("checksum rewritten: index %d -> %d", p1.ModifyIndex, p2.ModifyIndex)
	}
	// KV, not a local state file, is what is compared: a deleted key is
	// uploaded again.
	if _, err := srv.Client.KV().DeleteTree("kvx/app/hosts/", nil); err != nil {
		t.Fatal(err)
	}
	if res := mustPush(t, c, PushOptions{Key: "app/hosts", Content: content}); !res.Uploaded {
		t.Fatal("push after the key was deleted did not upload")
	}
}

func TestPushRefusals(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "n")
	cases := []struct {
		name string
		o    PushOptions
		code string
	}{
		{"too few lines", PushOptions{Key: "r/a", Content: lines(3, "x"), MinLines: 10}, RefusedTooShort},
		{"empty", PushOptions{Key: "r/a", Content: nil, MinLines: 1}, RefusedTooShort},
		{"too large", PushOptions{Key: "r/a", Content: lines(100, "x"), MaxSize: 100}, RefusedTooLarge},
	}
	for _, tc := range cases {
		_, err := c.Push(ctx, tc.o)
		if !errors.Is(err, ErrRefused) || refusalCode(err) != tc.code {
			t.Errorf("%s: err %v, want refusal %s", tc.name, err, tc.code)
		}
	}
	if err := c.Stop(ctx, "r/a", "maintenance CHG-1"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Push(ctx, PushOptions{Key: "r/a", Content: lines(20, "x")})
	if refusalCode(err) != RefusedStop || !strings.Contains(err.Error(), "maintenance CHG-1") {
		t.Fatalf("push with stop key: %v", err)
	}
	keys, _, _ := srv.Client.KV().Keys("kvx/r/a/", "", nil)
	if len(keys) != 1 || keys[0] != "kvx/r/a/stop" {
		t.Fatalf("refused pushes wrote keys: %v", keys)
	}
	if err := c.Start(ctx, "r/a"); err != nil {
		t.Fatal(err)
	}
	mustPush(t, c, PushOptions{Key: "r/a", Content: lines(20, "x")})
	if err := c.Stop(ctx, "r/a", " "); err == nil {
		t.Error("stop without a reason accepted")
	}
	if _, err := c.Push(ctx, PushOptions{Key: "../etc", Content: lines(20, "x")}); err == nil || !strings.Contains(err.Error(), `".."`) {
		t.Errorf("bad key: %v", err)
	}
}

func TestDeliverRefusals(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "web-1")
	dir := t.TempDir()
	target := filepath.Join(dir, "hosts")
	old := []byte("old content\n")
	if err := os.WriteFile(target, old, 0o644); err != nil {
		t.Fatal(err)
	}
	kv := srv.Client.KV()
	set := func(key, v string) {
		t.Helper()
		if _, err := kv.Put(&consulapi.KVPair{Key: key, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	good := string(lines(20, "good"))

	check := func(name, code string, o DeliverOptions) {
		t.Helper()
		o.Path = target
		d := c.Deliver(ctx, o)
		if d.Result != ResultRefused || refusalCode(d.Err) != code {
			t.Errorf("%s: %+v, want refusal %s", name, d, code)
		}
		if !bytes.Equal(readFile(t, target), old) {
			t.Fatalf("%s: target changed", name)
		}
	}
	check("missing", RefusedMissing, DeliverOptions{Key: "d/none"})

	set("kvx/d/bad/data", good)
	set("kvx/d/bad/checksum", checksum.OfString("something else"))
	check("mismatch", RefusedMismatch, DeliverOptions{Key: "d/bad"})
	set("kvx/d/bad/checksum", "not-a-checksum")
	check("malformed checksum", RefusedMismatch, DeliverOptions{Key: "d/bad"})

	mustPush(t, c, PushOptions{Key: "d/short", Content: lines(3, "s")})
	check("too short", RefusedTooShort, DeliverOptions{Key: "d/short", MinLines: 10})

	mustPush(t, c, PushOptions{Key: "d/ok", Content: []byte(good)})
	if err := c.Stop(ctx, "d/ok", "bad push"); err != nil {
		t.Fatal(err)
	}
	check("stop", RefusedStop, DeliverOptions{Key: "d/ok"})
	if err := c.Freeze(ctx, target, "debugging"); err != nil {
		t.Fatal(err)
	}
	check("frozen beats ignore-stop", RefusedFrozen, DeliverOptions{Key: "d/ok", IgnoreStop: true})
	// Another node's freeze of the same path does not hold this one.
	other := newClient(srv, "web-2")
	if d := other.Deliver(ctx, DeliverOptions{Key: "d/ok", Path: filepath.Join(dir, "other"), IgnoreStop: true}); d.Err != nil {
		t.Fatalf("web-2 delivery: %v", d.Err)
	}
	if err := c.Unfreeze(ctx, target); err != nil {
		t.Fatal(err)
	}
	d := c.Deliver(ctx, DeliverOptions{Key: "d/ok", Path: target, IgnoreStop: true})
	if d.Err != nil || d.Result != ResultDelivered || string(readFile(t, target)) != good {
		t.Fatalf("deliver with --ignore-stop after unfreeze: %+v", d)
	}
}

func TestDeliverNoRedeliveryModeAndCommand(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "web-1")
	dir := t.TempDir()
	target := filepath.Join(dir, "etc", "hosts")
	log := filepath.Join(dir, "ran")
	content := lines(20, "v1")
	mustPush(t, c, PushOptions{Key: "cmd/hosts", Content: content})
	o := DeliverOptions{Key: "cmd/hosts", Path: target, File: atomicfile.Options{Mode: 0o600},
		Command: `echo "ran $KVX_CHECKSUM" >> ` + log + ` && echo reloaded`}
	d := c.Deliver(ctx, o)
	if d.Err != nil || d.Result != ResultDelivered || strings.TrimSpace(d.Output) != "reloaded" {
		t.Fatalf("first delivery: %+v", d)
	}
	if got := string(readFile(t, log)); got != "ran "+checksum.Of(content)+"\n" {
		t.Fatalf("command log %q", got)
	}
	fi1, _ := os.Stat(target)
	if fi1.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi1.Mode().Perm())
	}
	if err := os.Chmod(target, 0o666); err != nil {
		t.Fatal(err)
	}
	d = c.Deliver(ctx, o)
	if d.Err != nil || d.Result != ResultUnchanged || !d.Fixed {
		t.Fatalf("second delivery: %+v, want unchanged with the mode put back", d)
	}
	fi2, _ := os.Stat(target)
	if fi2.Mode().Perm() != 0o600 || !os.SameFile(fi1, fi2) {
		t.Fatal("mode not put back, or the file was rewritten")
	}
	if got := strings.Count(string(readFile(t, log)), "ran"); got != 1 {
		t.Fatalf("command ran %d times, want 1", got)
	}
}

func TestDeliverCommandFailure(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "web-1")
	dir := t.TempDir()
	target := filepath.Join(dir, "hosts")
	flag := filepath.Join(dir, "fixed")
	mustPush(t, c, PushOptions{Key: "cf/hosts", Content: lines(20, "v1")})
	// Fails until the flag file exists.
	o := DeliverOptions{Key: "cf/hosts", Path: target, Command: "echo trying; test -e " + flag}
	d := c.Deliver(ctx, o)
	if d.Result != ResultCommandFailed || d.Err == nil || !strings.Contains(d.Output, "trying") {
		t.Fatalf("failing command: %+v", d)
	}
	if st, _ := c.Status(ctx, "cf/hosts"); st.Current != 0 || len(st.Behind) != 1 || st.Behind[0].Result != ResultCommandFailed {
		t.Fatalf("status after a failed command: %+v", st)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The file is current, but the failed command is run again.
	d = c.Deliver(ctx, o)
	if d.Err != nil || d.Result != ResultUnchanged || !strings.Contains(d.Output, "trying") {
		t.Fatalf("retry of the command: %+v", d)
	}
	if st, _ := c.Status(ctx, "cf/hosts"); st.Current != 1 {
		t.Fatalf("status after the command recovered: %+v", st)
	}
	// A command that hangs is stopped at its timeout.
	mustPush(t, c, PushOptions{Key: "cf/hosts", Content: lines(20, "v2")})
	start := time.Now()
	d = c.Deliver(ctx, DeliverOptions{Key: "cf/hosts", Path: target, Command: "sleep 30", CommandTimeout: 200 * time.Millisecond})
	if d.Result != ResultCommandFailed || !strings.Contains(d.Err.Error(), "timed out") || time.Since(start) > 20*time.Second {
		t.Fatalf("hanging command: %+v", d)
	}
}

func TestKvexpressLayout(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	content := lines(50, "kvexpress")
	sum := checksum.Of(content)
	// What kvexpress itself writes: plain; gzip+base64 with flags 0 (before
	// 1.16); brotli with flags 1 (1.16).
	gz, _, err := encode(Gzip, content, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := base64.StdEncoding.DecodeString(string(gz)); err != nil {
		t.Fatalf("kvexpress gzip is not base64 text: %v", err)
	}
	br, _, _ := encode(Brotli, content, true)
	stored := map[string]struct {
		v     []byte
		flags uint64
	}{"plain": {content, 0}, "gzip64": {gz, 0}, "brotli": {br, 1}}
	c := &Client{KV: kv, Prefix: "kvexpress", Node: "n"}
	for name, s := range stored {
		kv.Put(&consulapi.KVPair{Key: "kvexpress/" + name + "/data", Value: s.v, Flags: s.flags}, nil)
		kv.Put(&consulapi.KVPair{Key: "kvexpress/" + name + "/checksum", Value: []byte(sum)}, nil)
		path := filepath.Join(t.TempDir(), name)
		if d := c.Deliver(ctx, DeliverOptions{Key: name, Path: path}); d.Err != nil || !bytes.Equal(readFile(t, path), content) {
			t.Errorf("%s: %+v", name, d)
		}
	}
	// kvx in with the kvexpress prefix writes what kvexpress readers expect.
	mustPush(t, c, PushOptions{Key: "pushed", Content: content, Codec: Gzip})
	p, _, _ := kv.Get("kvexpress/pushed/data", nil)
	if p.Flags != 0 || !bytes.Equal(p.Value, gz) {
		t.Errorf("kvexpress gzip push stored flags %d, %d bytes", p.Flags, len(p.Value))
	}
	if _, err := c.Push(ctx, PushOptions{Key: "z", Content: content, Codec: Zstd}); err == nil {
		t.Error("zstd accepted for the kvexpress layout")
	}
}

func TestAcksAndStatus(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	pusher := newClient(srv, "pusher")
	mustPush(t, pusher, PushOptions{Key: "st/hosts", Content: lines(20, "v1")})
	nodes := []*Client{newClient(srv, "n1"), newClient(srv, "n2"), newClient(srv, "n3")}
	path := func(c *Client) string { return filepath.Join(dir, c.Node) }
	if err := nodes[2].Freeze(ctx, path(nodes[2]), "hands off"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		n.Deliver(ctx, DeliverOptions{Key: "st/hosts", Path: path(n)})
	}
	st, err := pusher.Status(ctx, "st/hosts")
	if err != nil {
		t.Fatal(err)
	}
	if st.Checksum != checksum.Of(lines(20, "v1")) || st.Nodes != 3 || st.Current != 2 || len(st.Behind) != 1 {
		t.Fatalf("status: %+v", st)
	}
	b := st.Behind[0]
	if b.Node != "n3" || b.Result != ResultRefused || b.Code != RefusedFrozen || !strings.Contains(b.Error, "hands off") {
		t.Fatalf("behind: %+v", b)
	}
	// An unchanged re-check does not rewrite the acknowledgement.
	p1, _, _ := srv.Client.KV().Get("kvx/st/hosts/nodes/n1", nil)
	nodes[0].Deliver(ctx, DeliverOptions{Key: "st/hosts", Path: path(nodes[0])})
	nodes[0].Deliver(ctx, DeliverOptions{Key: "st/hosts", Path: path(nodes[0])})
	p2, _, _ := srv.Client.KV().Get("kvx/st/hosts/nodes/n1", nil)
	if p1.ModifyIndex == p2.ModifyIndex {
		t.Fatal("first unchanged re-check should record 'unchanged' once")
	}
	nodes[0].Deliver(ctx, DeliverOptions{Key: "st/hosts", Path: path(nodes[0])})
	p3, _, _ := srv.Client.KV().Get("kvx/st/hosts/nodes/n1", nil)
	if p3.ModifyIndex != p2.ModifyIndex {
		t.Fatal("an identical acknowledgement was written again")
	}
	// A new version: every node that has not taken it is behind.
	mustPush(t, pusher, PushOptions{Key: "st/hosts", Content: lines(20, "v2")})
	st, _ = pusher.Status(ctx, "st/hosts")
	if st.Current != 0 || len(st.Behind) != 3 {
		t.Fatalf("status after a new push: %+v", st)
	}
}

func TestServerDownDuringOut(t *testing.T) {
	addr, raftAddr, data := servertest.FreeAddr(t), servertest.FreeAddr(t), t.TempDir()
	start := func() *servertest.Server {
		return servertest.Start(t, func(o *server.Options) { o.Dev, o.DataDir, o.HTTPAddr, o.RaftAddr = false, data, addr, raftAddr })
	}
	srv := start()
	c := newClient(srv, "web-1")
	target := filepath.Join(t.TempDir(), "hosts")
	v1 := lines(20, "v1")
	mustPush(t, c, PushOptions{Key: "down/hosts", Content: v1})
	if d := c.Deliver(ctx, DeliverOptions{Key: "down/hosts", Path: target}); d.Err != nil {
		t.Fatal(d.Err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	d := c.Deliver(ctx, DeliverOptions{Key: "down/hosts", Path: target})
	if d.Result != ResultError || d.Err == nil || errors.Is(d.Err, ErrRefused) {
		t.Fatalf("deliver with the server down: %+v", d)
	}
	if !bytes.Equal(readFile(t, target), v1) {
		t.Fatal("target changed while the server was down")
	}
	// --watch keeps retrying and delivers once the server is back.
	wctx, cancel := context.WithCancel(ctx)
	var logs servertest.Buffer
	wlog := slog.New(slog.NewTextHandler(&logs, nil))
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(wctx, DeliverOptions{Key: "down/hosts", Path: target},
			watch.Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: wlog}, nil)
	}()
	servertest.Eventually(t, "a failed query while down", func() bool { return strings.Contains(logs.String(), "watch query failed") })
	if !bytes.Equal(readFile(t, target), v1) {
		t.Fatal("target changed while the server was down")
	}
	srv2 := start() // same address: the watch's own client finds it again
	v2 := lines(20, "v2")
	mustPush(t, newClient(srv2, "pusher"), PushOptions{Key: "down/hosts", Content: v2})
	servertest.Eventually(t, "delivery after restart", func() bool { b, _ := os.ReadFile(target); return bytes.Equal(b, v2) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch returned %v", err)
	}
}

// A failed command is retried by --watch even when no acknowledgement
// records the failure (-no-ack): the client remembers it.
func TestWatchRetriesFailedCommand(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "web-1")
	dir := t.TempDir()
	flag, log := filepath.Join(dir, "ready"), filepath.Join(dir, "log")
	mustPush(t, c, PushOptions{Key: "wr/hosts", Content: lines(20, "v1")})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failures := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(wctx, DeliverOptions{Key: "wr/hosts", Path: filepath.Join(dir, "hosts"), NoAck: true,
			Command: "test -e " + flag + " && echo ok >> " + log},
			watch.Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
			func(d Delivery) {
				if d.Result == ResultCommandFailed {
					failures <- struct{}{}
				}
			})
	}()
	<-failures
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the command to succeed on a retry", func() bool {
		b, _ := os.ReadFile(log)
		return string(b) == "ok\n"
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// --watch hands the delivery the data its blocking query answered with. An
// answer that no longer matches the checksum (a newer push landed between
// the two reads) or is not this key's data at all is never written: the
// read starts over and fetches the data again.
func TestWatchAnswerCheckedLikeAFetch(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "web-1")
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		push PushOptions // the version in KV when the delivery reads
		pre  func(old []byte) []byte
	}{
		{"older version", PushOptions{Content: lines(30, "new")}, func(old []byte) []byte { return old }},
		{"garbage", PushOptions{Content: lines(30, "new")}, func([]byte) []byte { return []byte("not the file\n") }},
		{"older version, compressed", PushOptions{Content: lines(30, "newz"), Codec: Zstd}, func(old []byte) []byte { return old }},
		{"older chunked version", PushOptions{Content: bigFile(600<<10, 2)}, func(old []byte) []byte { return old }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "pre/" + strings.ReplaceAll(tc.name, " ", "-")
			first := lines(30, "old")
			if strings.Contains(tc.name, "chunked") {
				first = bigFile(600<<10, 1)
			}
			mustPush(t, c, PushOptions{Key: key, Content: first, Codec: tc.push.Codec})
			l, err := c.layout(key)
			if err != nil {
				t.Fatal(err)
			}
			old, found, err := c.KV.(rawGetter).GetRaw(ctx, l.Data())
			if err != nil || !found {
				t.Fatal(found, err)
			}
			o := tc.push
			o.Key = key
			mustPush(t, c, o)
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			d := c.deliverWith(ctx, DeliverOptions{Key: key, Path: path}, inHand{pre: tc.pre(old)})
			if d.Err != nil || d.Result != ResultDelivered {
				t.Fatalf("delivery: %+v", d)
			}
			if !bytes.Equal(readFile(t, path), o.Content) {
				t.Fatal("the target does not hold the current version")
			}
		})
	}
}

// noFetchKV is pkg/client's KV whose plain raw reads fail: a delivery that
// succeeds through it used the data it was handed.
type noFetchKV struct{ *client.KV }

func (noFetchKV) GetRaw(context.Context, string) ([]byte, bool, error) {
	return nil, false, errors.New("GetRaw called")
}

// The watch's answer, when current, is the data delivered: no second fetch.
func TestWatchAnswerDelivered(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "web-1")
	content := lines(40, "v1")
	mustPush(t, c, PushOptions{Key: "pre/used", Content: content, Codec: Gzip})
	l, _ := c.layout("pre/used")
	current, _, err := c.KV.(rawGetter).GetRaw(ctx, l.Data())
	if err != nil {
		t.Fatal(err)
	}
	strict := &Client{KV: noFetchKV{c.KV.(*client.KV)}, Node: "web-1"}
	path := filepath.Join(t.TempDir(), "hosts")
	if d := strict.deliverWith(ctx, DeliverOptions{Key: "pre/used", Path: path}, inHand{}); d.Err == nil || !strings.Contains(d.Err.Error(), "GetRaw called") {
		t.Fatalf("without an answer in hand the data must be fetched: %+v", d)
	}
	if d := strict.deliverWith(ctx, DeliverOptions{Key: "pre/used", Path: path}, inHand{pre: current}); d.Err != nil || !bytes.Equal(readFile(t, path), content) {
		t.Fatalf("with the current answer in hand: %+v", d)
	}
}

// A writer that puts data and checksum in two steps (consul kv put twice)
// leaves the data ahead of its checksum for a while. The watch, woken by
// the data, finds the file current for the checksum, sees the data is not
// that checksum's content, and checks again until the checksum lands: the
// checksum's write alone would not wake a query on the data key.
func TestWatchTwoStepWriter(t *testing.T) {
	srv := servertest.Start(t)
	c := newClient(srv, "web-1")
	target := filepath.Join(t.TempDir(), "hosts")
	v1, v2 := lines(20, "v1"), lines(20, "v2")
	mustPush(t, c, PushOptions{Key: "two/hosts", Content: v1})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan string, 1000)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(wctx, DeliverOptions{Key: "two/hosts", Path: target},
			watch.Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
			func(d Delivery) {
				select {
				case results <- d.Result:
				default:
				}
			})
	}()
	if r := <-results; r != ResultDelivered || !bytes.Equal(readFile(t, target), v1) {
		t.Fatalf("first delivery: %s", r)
	}
	l, _ := c.layout("two/hosts")
	kv := srv.Client.KV()
	if _, err := kv.Put(&consulapi.KVPair{Key: l.Data(), Value: v2}, nil); err != nil {
		t.Fatal(err)
	}
	// Woken by the data, then checking again: two checks, both leaving the
	// file as its checksum says.
	for range 2 {
		if r := <-results; r != ResultUnchanged {
			t.Fatalf("data ahead of its checksum: result %s, want %s", r, ResultUnchanged)
		}
	}
	if !bytes.Equal(readFile(t, target), v1) {
		t.Fatal("target changed before the checksum did")
	}
	// A node without the file refuses the mismatch, and checks again too.
	fresh := filepath.Join(t.TempDir(), "hosts")
	refused := make(chan string, 1000)
	done2 := make(chan error, 1)
	go func() {
		done2 <- newClient(srv, "web-2").Watch(wctx, DeliverOptions{Key: "two/hosts", Path: fresh},
			watch.Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
			func(d Delivery) {
				select {
				case refused <- refusalCode(d.Err):
				default:
				}
			})
	}()
	for range 2 {
		if code := <-refused; code != RefusedMismatch {
			t.Fatalf("fresh node, data ahead of its checksum: refusal %q, want %q", code, RefusedMismatch)
		}
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused delivery wrote the target: %v", err)
	}
	if _, err := kv.Put(&consulapi.KVPair{Key: l.Checksum(), Value: []byte(checksum.Of(v2))}, nil); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{target, fresh} {
		servertest.Eventually(t, "v2 delivered once its checksum landed", func() bool { b, _ := os.ReadFile(path); return bytes.Equal(b, v2) })
	}
	cancel()
	for _, ch := range []chan error{done, done2} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
}
