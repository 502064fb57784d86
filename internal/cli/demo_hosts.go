package cli

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/hostsgen"
	"github.com/kvxproject/kvx/pkg/transport"
)

// demoHostsServices are registered by the demo's hosts step when the
// catalog has no service of its own yet: node, address, service.
var demoHostsServices = []struct{ node, addr, service string }{
	{"app-1", "10.2.0.11", "web"}, {"app-2", "10.2.0.12", "web"}, {"app-3", "10.2.0.13", "web"},
	{"app-1", "10.2.0.11", "api"}, {"app-2", "10.2.0.12", "api"},
	{"db-1", "10.2.1.21", "db"}, {"db-2", "10.2.1.22", "db"},
}

// demoHostsShown is how many lines of the hosts file the demo prints.
const demoHostsShown = 12

// demoHosts is the demo's DNS-less name resolution: the healthy catalog
// becomes a hosts file with hostsgen, which kvx in pushes to the fleet
// (every node's etc/hosts, for dnsmasq --addn-hosts); then one instance's
// check turns critical and the pipeline runs again, which takes it out of
// every node's file.
func demoHosts(ctx context.Context, w io.Writer, addr string, push func([]byte, string) (transport.PushResult, error)) error {
	c, err := client.New(client.Options{Address: addr})
	if err != nil {
		return err
	}
	services, _, err := c.Catalog().Services((&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	delete(services, "consul")
	if len(services) == 0 {
		nodes := map[string]bool{}
		for i, s := range demoHostsServices {
			if err := demoRegister(c, s.node, s.addr, s.service, i); err != nil {
				return err
			}
			nodes[s.node] = true
		}
		fmt.Fprintf(w, "\ncatalog    registered %d instances of web, api and db on %d nodes, each with a passing check\n", len(demoHostsServices), len(nodes))
	}
	o := hostsgen.Options{ExcludeServices: []string{"consul"}, Nodes: true}
	generate := func() (hostsgen.Result, []hostsgen.Instance, time.Duration, error) {
		start := time.Now()
		in, err := hostsgen.Fetch(ctx, c, o, true)
		if err != nil {
			return hostsgen.Result{}, nil, 0, fmt.Errorf("demo hostsgen: %w", err)
		}
		return hostsgen.Generate(in, o), in, time.Since(start), nil
	}
	res, instances, took, err := generate()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nhostsgen   kvx hostsgen -nodes -exclude-service consul: %d entries from %d passing instances (%v):\n", res.Entries, res.Instances, round(took))
	fmt.Fprint(w, indent(string(firstLines(res.Data, demoHostsShown))))
	if _, err := push(res.Data, "push 5     kvx hostsgen -nodes | kvx in -f - (every node's etc/hosts, for dnsmasq --addn-hosts):"); err != nil {
		return err
	}

	// One instance's check turns critical (the first passing one, by
	// service and node): the pipeline runs again and the instance leaves
	// every node's file.
	instances = slices.DeleteFunc(instances, func(in hostsgen.Instance) bool { return !in.Passing || in.Service == "consul" })
	if len(instances) == 0 {
		return fmt.Errorf("demo hostsgen: no passing instance")
	}
	victim := slices.MinFunc(instances, func(a, b hostsgen.Instance) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Node, b.Node))
	})
	_, err = c.Catalog().Register(&consulapi.CatalogRegistration{Node: victim.Node, Address: victim.NodeAddress, SkipNodeUpdate: true,
		Checks: consulapi.HealthChecks{{Node: victim.Node, CheckID: "demo-hosts", Name: "demo: turned critical", ServiceID: victim.ID, Status: consulapi.HealthCritical}}},
		(&consulapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("demo: make %s on %s critical: %w", victim.Service, victim.Node, err)
	}
	if res, _, _, err = generate(); err != nil {
		return err
	}
	pushed, err := push(res.Data, fmt.Sprintf("push 6     %s on %s turned critical; hostsgen | kvx in again:", victim.Service, victim.Node))
	if err != nil {
		return err
	}
	fmt.Fprint(w, indent(pushed.Diff))
	return nil
}

// firstLines is the first n lines of data, and a line saying how many more
// there are.
func firstLines(data []byte, n int) []byte {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) <= n {
		return data
	}
	return fmt.Appendf(bytes.Join(lines[:n], nil), "... (%d more lines)\n", len(lines)-n)
}

func demoRegister(c *consulapi.Client, node, addr, service string, i int) error {
	id := fmt.Sprintf("%s-%d", service, i)
	_, err := c.Catalog().Register(&consulapi.CatalogRegistration{Node: node, Address: addr,
		Service: &consulapi.AgentService{ID: id, Service: service, Tags: []string{"v1"}, Port: 8080},
		Checks:  consulapi.HealthChecks{{Node: node, CheckID: "check-" + id, Name: service, Status: consulapi.HealthPassing, ServiceID: id}}}, nil)
	if err != nil {
		return fmt.Errorf("demo: register %s on %s: %w", service, node, err)
	}
	return nil
}
