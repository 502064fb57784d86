package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/hostsgen"
	"github.com/kvxproject/kvx/pkg/transport"
)

// demoHostsServices are registered by the demo's hosts step when the
// catalog has no service of its own yet: node, address, service, tags.
var demoHostsServices = []struct{ node, addr, service string }{
	{"app-1", "10.2.0.11", "web"}, {"app-2", "10.2.0.12", "web"}, {"app-3", "10.2.0.13", "web"},
	{"app-1", "10.2.0.11", "api"}, {"app-2", "10.2.0.12", "api"},
	{"db-1", "10.2.1.21", "db"}, {"db-2", "10.2.1.22", "db"},
}

// demoHosts is the demo's DNS-less name resolution: the healthy catalog
// becomes a hosts file with hostsgen, which kvx in pushes to the fleet
// (every node's etc/hosts, for dnsmasq --addn-hosts); a check turning
// critical takes its instance out of every node's file.
func demoHosts(ctx context.Context, w io.Writer, addr string, push func([]byte, string) (transport.PushResult, error)) error {
	c, err := client.New(client.Options{Address: addr})
	if err != nil {
		return err
	}
	services, _, err := c.Catalog().Services(nil)
	if err != nil {
		return err
	}
	delete(services, "consul")
	registered := len(services) == 0
	if registered {
		for i, s := range demoHostsServices {
			if err := demoRegister(c, s.node, s.addr, s.service, i, consulapi.HealthPassing); err != nil {
				return err
			}
		}
		nodes := map[string]bool{}
		for _, s := range demoHostsServices {
			nodes[s.node] = true
		}
		fmt.Fprintf(w, "\ncatalog    registered %d instances of web, api and db on %d nodes, each with a passing check\n", len(demoHostsServices), len(nodes))
	}
	o := hostsgen.Options{ExcludeServices: []string{"consul"}, Nodes: true}
	generate := func() (hostsgen.Result, time.Duration, error) {
		start := time.Now()
		in, err := hostsgen.Fetch(ctx, c, o, true)
		if err != nil {
			return hostsgen.Result{}, 0, err
		}
		return hostsgen.Generate(in, o), time.Since(start), nil
	}
	res, took, err := generate()
	if err != nil {
		return fmt.Errorf("demo hostsgen: %w", err)
	}
	fmt.Fprintf(w, "\nhostsgen   kvx hostsgen -nodes -exclude-service consul: %d entries from %d passing instances (%v):\n", res.Entries, res.Instances, round(took))
	fmt.Fprint(w, indent(string(res.Data)))
	if _, err := push(res.Data, "push 5     kvx hostsgen -nodes | kvx in -f - (every node's etc/hosts, for dnsmasq --addn-hosts):"); err != nil {
		return err
	}
	if !registered {
		return nil
	}
	// A check turns critical: the pipeline runs again, the instance leaves
	// every node's file.
	s := demoHostsServices[1]
	if err := demoRegister(c, s.node, s.addr, s.service, 1, consulapi.HealthCritical); err != nil {
		return err
	}
	if res, _, err = generate(); err != nil {
		return fmt.Errorf("demo hostsgen: %w", err)
	}
	pushed, err := push(res.Data, fmt.Sprintf("push 6     %s on %s turned critical; hostsgen | kvx in again:", s.service, s.node))
	if err != nil {
		return err
	}
	fmt.Fprint(w, indent(pushed.Diff))
	return nil
}

func demoRegister(c *consulapi.Client, node, addr, service string, i int, status string) error {
	id := fmt.Sprintf("%s-%d", service, i)
	_, err := c.Catalog().Register(&consulapi.CatalogRegistration{Node: node, Address: addr,
		Service: &consulapi.AgentService{ID: id, Service: service, Tags: []string{"v1"}, Port: 8080},
		Checks:  consulapi.HealthChecks{{Node: node, CheckID: "check-" + id, Name: service, Status: status, ServiceID: id}}}, nil)
	if err != nil {
		return fmt.Errorf("demo: register %s on %s: %w", service, node, err)
	}
	return nil
}
