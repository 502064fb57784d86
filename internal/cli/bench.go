package cli

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/bench"
	"github.com/kvxproject/kvx/pkg/transport"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a Consul-compatible server (kvx or Consul)",
	}
	cmd.AddCommand(newBenchKVCmd(), newBenchFanoutCmd(), newBenchCatalogCmd(), newBenchLockCmd(), newBenchEventCmd(), newBenchDNSCmd())
	return cmd
}

func defaultAddr() string {
	if a := os.Getenv("CONSUL_HTTP_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:8500"
}

func newBenchKVCmd() *cobra.Command {
	o := bench.KVOptions{}
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Measure PUT/s and GET/s with p50 and p99",
		Long: `Write for -duration with -writers connections, then read for -duration
with -readers connections, then delete the keys. Works against any
Consul-compatible address, so the same run can measure another server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Token = os.Getenv("CONSUL_HTTP_TOKEN")
			if o.Prefix == "" {
				o.Prefix = "kvx-bench/" + strconv.FormatInt(time.Now().UnixNano(), 36) + "/"
			}
			results, err := bench.RunKV(cmd.Context(), o)
			for _, r := range results {
				fmt.Fprintln(cmd.OutOrStdout(), r)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", defaultAddr(), "HTTP address of the server (CONSUL_HTTP_ADDR when set)")
	f.IntVar(&o.Writers, "writers", 64, "concurrent writers, each on its own connection")
	f.IntVar(&o.Readers, "readers", 64, "concurrent readers, each on its own connection")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "length of each phase")
	f.IntVar(&o.ValueSize, "value-size", 128, "bytes per value")
	f.IntVar(&o.Keys, "keys", 10000, "distinct keys written and read")
	f.StringVar(&o.Prefix, "prefix", "", "key prefix, removed at the end (default: kvx-bench/<unique>/)")
	f.IntVar(&o.ServerPID, "server-pid", 0, "the server's process id, on this machine: print its peak and end RSS for each phase (Linux)")
	return cmd
}

func newBenchFanoutCmd() *cobra.Command {
	o := bench.FanoutOptions{}
	cmd := &cobra.Command{
		Use:   "fanout",
		Short: "Measure how fast a pushed file reaches N watching nodes",
		Long: `Start -nodes simulated nodes in this process, each with its own connection
running the real kvx out --watch code (blocking query, verify, write a real
file, acknowledge). Push a file of -size bytes -rounds times (after one
unmeasured warm-up) and print, per round, the push's own time, the first
delivery, and the time from the start of the push to each node's rename:
p50, p90, p99, max and delivered/N; then one line pooling all rounds. Works
against any Consul-compatible address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Token = os.Getenv("CONSUL_HTTP_TOKEN")
			rounds, srv, err := bench.RunFanoutServer(cmd.Context(), o)
			for _, r := range rounds {
				fmt.Fprintln(cmd.OutOrStdout(), r)
			}
			if len(rounds) > 1 {
				fmt.Fprintln(cmd.OutOrStdout(), bench.Pooled(rounds))
			}
			if err == nil && len(o.ServerPIDs) > 0 {
				fmt.Fprintln(cmd.OutOrStdout(), srv)
			}
			if err == nil {
				for _, r := range rounds {
					if r.Delivered < r.Nodes {
						err = fmt.Errorf("round %d: %d of %d nodes did not get the file within %v", r.Round, r.Nodes-r.Delivered, r.Nodes, o.Timeout)
						break
					}
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", defaultAddr(), "HTTP address of the server (CONSUL_HTTP_ADDR when set); comma separated: the nodes are spread over the servers, the pushes go to the first")
	f.IntVar(&o.Nodes, "nodes", 1000, "simulated nodes, each with its own connection")
	f.IntVar(&o.Size, "size", 30000, "bytes of the file pushed")
	f.IntVar(&o.Rounds, "rounds", 5, "measured pushes")
	f.DurationVar(&o.Timeout, "timeout", 30*time.Second, "per round: nodes without the file by then count as not delivered")
	f.BoolVar(&o.Ack, "ack", true, "nodes acknowledge each delivery, as kvx out does")
	f.DurationVar(&o.AckJitter, "ack-jitter", time.Second, "against Consul: spread each node's acknowledgement PUT over a random delay up to this, as kvx out --watch does")
	f.DurationVar(&o.AckDelay, "ack-delay", transport.DefaultAckDelay, "against a kvx server: each node sends its next query, with its acknowledgement, this long after a delivery, as kvx out --watch does")
	f.StringVar(&o.Dir, "dir", "", "where the nodes write their files (default: a temp dir in /dev/shm if present, else in $TMPDIR; removed after)")
	f.StringVar(&o.Prefix, "prefix", "", "KV prefix (default kvx)")
	f.StringVar(&o.Client, "client", "kvx", "how nodes follow the file: kvx (kvx out --watch's code) or consul (blocking GET on the checksum, then a JSON GET of the data, as kvexpress and consul-template do; no acknowledgements)")
	f.IntSliceVar(&o.ServerPIDs, "server-pid", nil, "the server's process id, on this machine (repeatable, or comma separated, for a cluster's servers): print their CPU time per delivery, summed, and the first's RSS over the measured rounds, and this process's own CPU per delivery over the same span (Linux)")
	f.BoolVar(&o.Stale, "stale", false, "the nodes read with ?stale from the server they were given, as kvx out -stale (with -addr A,B,C: each server answers a third of the fleet)")
	return cmd
}

func newBenchCatalogCmd() *cobra.Command {
	o := bench.CatalogOptions{}
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "Measure catalog registration, health watch wake-ups and health GETs",
		Long: `Register -nodes nodes with -services-per-node services each (one check
each), sharing -service-names names; start -watchers blocking
health/service/:s?passing queries on one service and -other-watchers on the
others, each on its own connection; flip the check of one instance of the
watched service -flips times while -readers connections GET
health/service/:s?passing of random services, -get-rate a second. Print registrations/s, how long the watchers took
to see each flip (p50, p99, max), how many watchers of other services were
woken, the GET latencies and, with -server-pid, the server's RSS. The nodes
are deregistered at the end. Works against any Consul-compatible address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Token = os.Getenv("CONSUL_HTTP_TOKEN")
			if o.Prefix == "" {
				o.Prefix = "kvx-bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			}
			res, err := bench.RunCatalog(cmd.Context(), o)
			if res.Registrations > 0 {
				fmt.Fprintln(cmd.OutOrStdout(), res)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", defaultAddr(), "HTTP address of the server (CONSUL_HTTP_ADDR when set)")
	f.IntVar(&o.Nodes, "nodes", 1000, "nodes registered")
	f.IntVar(&o.ServicesPerNode, "services-per-node", 5, "services on each node, each with one check")
	f.IntVar(&o.ServiceNames, "service-names", 1000, "distinct service names the instances share")
	f.IntVar(&o.Registrars, "registrars", 64, "concurrent registering connections")
	f.IntVar(&o.Watchers, "watchers", 1000, "blocking health queries on the flipped service")
	f.IntVar(&o.OtherWatchers, "other-watchers", 1000, "blocking health queries on other services")
	f.IntVar(&o.Flips, "flips", 10, "times the watched service's check flips")
	f.IntVar(&o.Readers, "readers", 4, "connections doing health GETs during the flips")
	f.IntVar(&o.GetRate, "get-rate", 2000, "health GETs a second over all readers during the flips (0: as fast as they go)")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "per flip: watchers that have not seen it by then count as missed")
	f.StringVar(&o.Prefix, "prefix", "", "node and service name prefix (default: kvx-bench-<unique>)")
	f.IntVar(&o.ServerPID, "server-pid", 0, "the server's process id, on this machine: print its RSS with the catalog loaded (Linux)")
	return cmd
}

func newBenchLockCmd() *cobra.Command {
	o := bench.LockOptions{}
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Measure kvx lock's handover: holder's command exits -> spare's command starts",
		Long: `Keep 1+spares kvx lock processes (this binary) contending for one lock, each
running a command that logs its start and end (date +%s%N) and holds for
-hold, starting a new contender whenever one exits, until -handovers
handovers were seen; print p50, p90, p99 and max of the handover times,
and fail if two commands ever held the lock at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchProcesses(cmd, "lock", func(bin, dir, unique string) (any, error) {
				o.Bin, o.Dir = bin, dir
				if o.Prefix == "" {
					o.Prefix = "kvx-bench/" + unique
				}
				return bench.RunLock(cmd.Context(), o)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", defaultAddr(), "HTTP address of the server (CONSUL_HTTP_ADDR when set)")
	f.IntVar(&o.Handovers, "handovers", 50, "handovers to measure")
	f.IntVar(&o.Spares, "spares", 1, "contenders waiting besides the holder")
	f.DurationVar(&o.Hold, "hold", 100*time.Millisecond, "how long each holder's command runs")
	f.StringVar(&o.Prefix, "prefix", "", "lock prefix (default: kvx-bench/lock-<unique>)")
	return cmd
}

// benchProcesses runs a benchmark of kvx processes (this binary), with a
// scratch directory removed after and a unique name for its keys, and
// prints its result.
func benchProcesses(cmd *cobra.Command, what string, run func(bin, dir, unique string) (any, error)) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kvx-bench-"+what+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	res, err := run(bin, dir, what+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), res)
	return nil
}

func newBenchEventCmd() *cobra.Command {
	o := bench.EventOptions{}
	cmd := &cobra.Command{
		Use:   "event",
		Short: "Measure event fire -> kvx watch handler start over many watch processes",
		Long: `Start -watchers kvx watch -type event processes (this binary) whose handler
logs its start (date +%s%N), fire a warm-up event and wait for every
handler, then fire -events events, each once every handler ran the one
before; print p50, p90, p99 and max of fire -> handler start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchProcesses(cmd, "event", func(bin, dir, unique string) (any, error) {
				o.Bin, o.Dir = bin, dir
				if o.Name == "" {
					o.Name = "kvx-bench-" + unique
				}
				return bench.RunEvent(cmd.Context(), o)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", defaultAddr(), "HTTP address of the server (CONSUL_HTTP_ADDR when set)")
	f.IntVar(&o.Watchers, "watchers", 100, "kvx watch processes")
	f.IntVar(&o.Events, "events", 10, "events measured")
	f.StringVar(&o.Name, "name", "", "event name (default: kvx-bench-<unique>)")
	return cmd
}
