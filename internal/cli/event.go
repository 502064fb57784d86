package cli

import (
	"fmt"
	"regexp"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/client"
)

type eventOptions struct {
	httpAddr, token, datacenter string
	tls                         tlsClientFlags
	name, node, service, tag    string
}

func newEventCmd() *cobra.Command {
	o := &eventOptions{}
	cmd := &cobra.Command{
		Use:   "event -name NAME [-node RE] [-service RE] [-tag RE] [PAYLOAD]",
		Short: "Fire a user event, as consul event, and print its ID",
		Long: `Fire a user event (PUT /v1/event/fire/NAME) with an optional payload and
filters: only the nodes whose name matches -node, and that run a service
matching -service (with a tag matching -tag), list it. The event goes
through Raft, so every server keeps it (the last 256 events). Name plus
payload may be at most 512 bytes, as Consul's.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e := &consulapi.UserEvent{Name: o.name, NodeFilter: o.node, ServiceFilter: o.service, TagFilter: o.tag}
			if len(args) == 1 {
				e.Payload = []byte(args[0])
			}
			if err := checkEvent(e); err != nil {
				return usageError{err}
			}
			c, err := client.New(client.Options{Address: o.httpAddr, Token: o.token, Datacenter: o.datacenter, TLS: o.tls.options()})
			if err != nil {
				return err
			}
			id, _, err := c.Event().Fire(e, nil)
			if err != nil {
				return fmt.Errorf("fire event %q: %w", o.name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Event ID: %s\n", id)
			return nil
		},
	}
	f := cmd.Flags()
	o.tls.register(f)
	f.StringVar(&o.httpAddr, "http-addr", "", "server HTTP address (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500)")
	f.StringVar(&o.token, "token", "", "ACL token (default: CONSUL_HTTP_TOKEN)")
	f.StringVar(&o.datacenter, "datacenter", "", "datacenter to talk to (default: the server's)")
	f.StringVar(&o.name, "name", "", "event name (required)")
	f.StringVar(&o.node, "node", "", "regular expression the receiving nodes' names must match")
	f.StringVar(&o.service, "service", "", "regular expression one of the receiving nodes' services must match")
	f.StringVar(&o.tag, "tag", "", "regular expression a tag of that service must match (needs -service)")
	return cmd
}

// checkEvent refuses, before anything is sent, what the server would.
func checkEvent(e *consulapi.UserEvent) error {
	if e.Name == "" {
		return fmt.Errorf("-name is required")
	}
	if n := len(e.Name) + len(e.Payload); n > 512 {
		return fmt.Errorf("event %q: name and payload are %d bytes, more than the 512 allowed", e.Name, n)
	}
	if e.TagFilter != "" && e.ServiceFilter == "" {
		return fmt.Errorf("-tag needs -service")
	}
	for _, f := range []struct{ flag, re string }{{"-node", e.NodeFilter}, {"-service", e.ServiceFilter}, {"-tag", e.TagFilter}} {
		if _, err := regexp.Compile(f.re); err != nil {
			return fmt.Errorf("%s %q: %v", f.flag, f.re, err)
		}
	}
	return nil
}
