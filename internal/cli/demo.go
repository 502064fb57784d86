package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/checksum"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/server"
	"github.com/kvxproject/kvx/pkg/transport"
	"github.com/kvxproject/kvx/pkg/watch"
)

type demoOptions struct {
	nodes int
	file  string
	dir   string
	key   string
}

func newDemoCmd() *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show kvx end to end on this machine: a server, a fleet, two pushes",
		Long: `Start an embedded server in this process and -nodes simulated nodes, each
running kvx out --watch on its own connection and writing a real file under
-dir. Push -file, report how many nodes got it and how fast, change one
line, push again, and show the update event's diff and kvx status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), cmd.OutOrStdout(), o) },
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 200, "simulated nodes")
	f.StringVar(&o.file, "file", filepath.Join("testdata", "hosts"), "file to push")
	f.StringVar(&o.dir, "dir", "", "where the nodes write their files (default: a temp dir, removed after)")
	f.StringVar(&o.key, "key", "demo/hosts", "key to push to")
	return cmd
}

type demoFleet struct {
	mu      sync.Mutex
	written map[string][]time.Duration // checksum -> delivery latencies
	start   time.Time
}

func (f *demoFleet) record(d transport.Delivery) {
	if d.Result != transport.ResultDelivered {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written[d.Checksum] = append(f.written[d.Checksum], d.Written.Sub(f.start))
}

// wait returns the latencies of the nodes that have sum, once all n have
// it or the timeout passes.
func (f *demoFleet) wait(ctx context.Context, sum string, n int, timeout time.Duration) []time.Duration {
	deadline := time.Now().Add(timeout)
	for {
		f.mu.Lock()
		lats := slices.Clone(f.written[sum])
		f.mu.Unlock()
		if len(lats) >= n || time.Now().After(deadline) || ctx.Err() != nil {
			slices.Sort(lats)
			return lats
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runDemo(ctx context.Context, w io.Writer, o *demoOptions) error {
	if o.nodes <= 0 {
		return usageError{fmt.Errorf("-nodes %d: want at least one", o.nodes)}
	}
	v1, err := os.ReadFile(o.file)
	if err != nil {
		return fmt.Errorf("demo file: %w (run from the repository root, or pass -file)", err)
	}
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "kvx-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(o.dir)
	}
	quiet := slog.New(slog.DiscardHandler)
	srv, err := server.New(server.Options{Dev: true, NodeName: "kvx-demo", HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer srv.Close()
	if err := srv.WaitForLeader(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "server     kvx server -dev in this process on %s\n", srv.HTTPAddr())
	if err := demoCatalog(ctx, w, srv.HTTPAddr(), o.nodes); err != nil {
		return err
	}

	newClient := func(node string) (*transport.Client, error) {
		kv, err := client.NewKV(client.Options{Address: srv.HTTPAddr()})
		if err != nil {
			return nil, err
		}
		return &transport.Client{KV: kv, Node: node}, nil
	}
	fleet := &demoFleet{written: map[string][]time.Duration{}}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	paths := make([]string, o.nodes)
	for i := range o.nodes {
		c, err := newClient(fmt.Sprintf("node-%03d", i))
		if err != nil {
			return err
		}
		paths[i] = filepath.Join(o.dir, c.Node, "etc", "hosts")
		do := transport.DeliverOptions{Key: o.key, Path: paths[i], MinLines: 10, AckJitter: 200 * time.Millisecond}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Watch(ctx, do, watch.Options{Reconcile: time.Minute}, fleet.record)
		}()
	}
	fmt.Fprintf(w, "fleet      %d nodes running kvx out --watch -k %s, each on its own connection, files under %s\n", o.nodes, o.key, o.dir)

	pusher, err := newClient("pusher")
	if err != nil {
		return err
	}
	push := func(content []byte, label string) (transport.PushResult, error) {
		fleet.mu.Lock()
		fleet.start = time.Now()
		fleet.mu.Unlock()
		res, err := pusher.Push(ctx, transport.PushOptions{Key: o.key, Content: content, MinLines: 10, Diff: true})
		if err != nil {
			return res, err
		}
		lats := fleet.wait(ctx, res.Checksum, o.nodes, 30*time.Second)
		fmt.Fprintf(w, "\n%s %d bytes, %d lines, checksum %s\n", label, res.Bytes, res.Lines, res.Checksum[:16])
		if len(lats) == 0 {
			return res, fmt.Errorf("no node got the file within 30s")
		}
		fmt.Fprintf(w, "           %d/%d nodes have it: first %v, p50 %v, p99 %v, last %v after the push began\n", len(lats), o.nodes,
			round(lats[0]), round(lats[len(lats)/2]), round(lats[len(lats)*99/100]), round(lats[len(lats)-1]))
		return res, nil
	}
	if _, err := push(v1, "push 1     kvx in -k "+o.key+" -f "+o.file+":"); err != nil {
		return err
	}
	// Change one line and push again.
	nl := bytes.IndexByte(v1, '\n')
	v2 := append([]byte("# changed by kvx demo at "+time.Now().UTC().Format(time.RFC3339)), v1[max(nl, 0):]...)
	res, err := push(v2, "push 2     the same file with its first line changed:")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nevent      Updated: %s (sent to Datadog with -dogstatsd-addr)\n", o.key)
	fmt.Fprint(w, indent(res.Diff))

	same := 0
	for _, p := range paths {
		if sum, err := checksum.OfFile(p); err == nil && sum == res.Checksum {
			same++
		}
	}
	fmt.Fprintf(w, "\nverified   %d/%d target files hash to the pushed checksum\n", same, o.nodes)
	// Acknowledgements are spread over the ack jitter: wait for them (kvx
	// status -wait).
	st, err := pusher.Wait(ctx, transport.WaitOptions{Key: o.key, Want: o.nodes, Checksum: res.Checksum, Timeout: 10 * time.Second})
	if err != nil && !errors.Is(err, transport.ErrWaitTimeout) {
		return err
	}
	fmt.Fprintf(w, "status     kvx status -k %s: %d/%d nodes acknowledged checksum %s\n", o.key, st.Current, st.Nodes, st.Checksum[:16])
	if same != o.nodes || st.Current != o.nodes {
		return errors.New("demo: not every node has the file")
	}
	if err := demoGit(ctx, w, srv.HTTPAddr(), v1, push); err != nil {
		return err
	}
	if err := demoRender(ctx, w, o.dir, srv.HTTPAddr(), push); err != nil {
		return err
	}
	return demoHosts(ctx, w, srv.HTTPAddr(), push)
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

func indent(s string) string {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter([]byte(s), []byte("\n")) {
		if len(line) > 0 {
			b.WriteString("           ")
			b.Write(line)
		}
	}
	return b.String()
}
