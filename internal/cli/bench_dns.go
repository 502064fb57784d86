package cli

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/bench"
)

func newBenchDNSCmd() *cobra.Command {
	o := bench.DNSOptions{}
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Measure DNS queries/s and latency for one service over UDP",
		Long: `Register -instances passing instances of -service (each on its own node)
through the HTTP API at -addr, then send A queries for
<service>.service.<domain> to -dns-addr over UDP from -clients sockets for
-duration, each client waiting for its answer before the next query; print
queries/s, p50, p90, p99 and max latency. The instances are deregistered at
the end. Works against any Consul-compatible server with a DNS interface.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Token = os.Getenv("CONSUL_HTTP_TOKEN")
			if o.Service == "" {
				o.Service = "kvx-bench-dns-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			}
			res, err := bench.RunDNS(cmd.Context(), o)
			if res.Queries > 0 {
				fmt.Fprintln(cmd.OutOrStdout(), res)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", defaultAddr(), "HTTP address of the server, to register the instances (CONSUL_HTTP_ADDR when set)")
	f.StringVar(&o.DNSAddr, "dns-addr", "127.0.0.1:8600", "DNS address of the server (UDP)")
	f.StringVar(&o.Domain, "domain", "consul.", "the server's DNS domain")
	f.IntVar(&o.Instances, "instances", 20, "instances registered (0: query an existing -service)")
	f.StringVar(&o.Service, "service", "", "service queried (default: kvx-bench-dns-<unique>)")
	f.IntVar(&o.Clients, "clients", 8, "UDP sockets, one query outstanding each")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "length of the run")
	f.DurationVar(&o.Timeout, "timeout", time.Second, "a query unanswered after this counts as lost")
	return cmd
}
