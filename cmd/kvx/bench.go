package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/bench"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a Consul-compatible server (kvx or Consul)",
	}
	cmd.AddCommand(newBenchKVCmd())
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
	f.StringVar(&o.Addr, "addr", defaultAddr(), "HTTP address of the server (default: CONSUL_HTTP_ADDR or 127.0.0.1:8500)")
	f.IntVar(&o.Writers, "writers", 64, "concurrent writers, each on its own connection")
	f.IntVar(&o.Readers, "readers", 64, "concurrent readers, each on its own connection")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "length of each phase")
	f.IntVar(&o.ValueSize, "value-size", 128, "bytes per value")
	f.IntVar(&o.Keys, "keys", 10000, "distinct keys written and read")
	f.StringVar(&o.Prefix, "prefix", "", "key prefix, removed at the end (default: kvx-bench/<unique>/)")
	return cmd
}
