package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/agent"
)

type agentOptions struct {
	agent.Options
	validate bool
	logLevel string
	logJSON  bool
	dns      dnsFlags
}

func newAgentCmd() *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent of a node: its services and checks, synced to the servers' catalog",
		Long: `Run a kvx agent on a node that is not a server. It reads service and check
definitions from -config-dir (Consul's agent JSON format), runs the checks,
keeps the node's entries in the servers' catalog equal to them, heartbeats to
the servers, and serves the Consul HTTP API on -http-addr: /v1/agent/* itself,
everything else forwarded to a server. SIGHUP reloads -config-dir (a bad file
is logged and the running definitions stay) and the TLS files; SIGTERM or SIGINT
stops it, and with -leave-on-terminate removes the node from the catalog. It
answers DNS on -dns-addr from the servers' catalog, as kvx server does. With -validate it
checks -config-dir and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, o) },
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Join, "join", nil, "HTTP address of a server (repeatable, or comma separated); requests go to the next one when a server is down")
	f.StringVar(&o.NodeName, "node", "", "node name, unique in the cluster (default: the host name)")
	f.StringVar(&o.ConfigDir, "config-dir", "", "directory of service and check definitions (*.json, Consul's agent format)")
	f.StringVar(&o.HTTPAddr, "http-addr", agent.DefaultHTTPAddr, "address of the agent's HTTP API")
	f.StringVar(&o.Advertise, "advertise", "", "the node's address in the catalog (default: the local address that reaches the first -join server)")
	f.StringVar(&o.DataDir, "data-dir", "", "directory that keeps the node's ID and its API registrations across restarts (default: an ID derived from the node name; API registrations end with the agent)")
	f.BoolVar(&o.EnableScriptChecks, "enable-script-checks", false, "allow checks that run a program (args), from files and the API")
	f.BoolVar(&o.LeaveOnTerminate, "leave-on-terminate", true, "on SIGTERM or SIGINT, remove the node from the catalog")
	f.DurationVar(&o.SyncInterval, "sync-interval", agent.DefaultSyncInterval, "full sync with the catalog this often (±25% jitter), putting back what was removed behind the agent's back")
	f.StringVar(&o.ACLAgentToken, "acl-agent-token", "", "token for the agent's own catalog sync and heartbeats when the servers enforce ACLs (requests it proxies carry their own)")
	f.StringVar(&o.HTTPSAddr, "https-addr", "", "serve the HTTP API over TLS on this address too (needs -tls-cert-file and -tls-key-file)")
	f.StringVar(&o.TLS.CertFile, "tls-cert-file", "", "PEM certificate for HTTPS, also shown to https:// servers (kvx tls cert create -client)")
	f.StringVar(&o.TLS.KeyFile, "tls-key-file", "", "PEM private key of -tls-cert-file")
	f.StringVar(&o.TLS.CAFile, "tls-ca-file", "", "PEM CA that checks the servers' certificates (https:// -join) and, with -tls-verify-incoming, the clients'")
	f.BoolVar(&o.TLS.VerifyIncoming, "tls-verify-incoming", false, "HTTPS clients must show a certificate signed by -tls-ca-file")
	f.StringVar(&o.TLS.ServerName, "tls-server-name", "", "name to check in the servers' certificates, e.g. server.dc1.consul (default: the -join address's host)")
	f.IntVar(&o.MaxConnsPerClient, "http-max-conns-per-client", 0, fmt.Sprintf("connections one client IP may hold open on the API; more are closed at once (default: %d; -1: no cap)", agent.DefaultMaxConnsPerClient))
	f.BoolVar(&o.validate, "validate", false, "check -config-dir and exit: 0 when valid, 1 with the file and field of each error")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&o.logJSON, "log-json", false, "log JSON lines instead of text")
	o.dns.register(f)
	return cmd
}

func runAgent(cmd *cobra.Command, o *agentOptions) error {
	if o.validate {
		if o.ConfigDir == "" {
			return usageError{fmt.Errorf("-validate needs -config-dir")}
		}
		defs, err := agent.LoadConfig(o.ConfigDir, o.EnableScriptChecks)
		if err != nil {
			return fmt.Errorf("%s: %w", o.ConfigDir, err)
		}
		for _, w := range defs.Warnings {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: valid: %d services, %d checks\n", o.ConfigDir, len(defs.Services), len(defs.AllChecks()))
		return nil
	}
	if len(o.Join) == 0 {
		return usageError{fmt.Errorf("give at least one -join address (a server's HTTP address)")}
	}
	if cmd.Flags().Changed("http-addr") && o.HTTPAddr == "" {
		o.HTTPAddr = agent.HTTPDisabled // -http-addr "": HTTPS only
	}
	logger, err := newLogger(cmd.ErrOrStderr(), o.logLevel, o.logJSON)
	if err != nil {
		return err
	}
	opts := o.Options
	opts.Logger = logger
	opts.Version = Version
	a, err := agent.New(opts)
	if errors.Is(err, agent.ErrInvalidOptions) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	l, err := o.dns.listener(cmd.Flags(), a.Call, logger)
	if err != nil {
		return usageError{err}
	}
	if l != nil {
		a.Listen(l)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-cmd.Context().Done():
				return
			case <-hup:
				if err := a.Reload(); err != nil {
					logger.Error("reload refused: the running definitions stay", "err", err)
				}
				if err := a.ReloadTLS(); err != nil {
					logger.Error("reload refused: the running certificates stay", "err", err)
				}
			}
		}
	}()
	return a.Run(cmd.Context())
}
