package cli

import (
	"context"
	"fmt"
	"io"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
)

// demoCatalog registers each simulated node in the catalog, as its agent
// would: the node on a 10.0.x.y address with a web service and a passing
// HTTP check, so hosts files, DNS and render's service function have data.
// The nodes carry no serfHealth check: no agent heartbeats for them, so
// the leader leaves them alone.
func demoCatalog(ctx context.Context, w io.Writer, addr string, nodes int) error {
	c, err := client.New(client.Options{Address: addr})
	if err != nil {
		return err
	}
	for i := range nodes {
		node := fmt.Sprintf("node-%03d", i)
		ip := fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)
		reg := &consulapi.CatalogRegistration{Node: node, Address: ip,
			TaggedAddresses: map[string]string{"lan": ip, "lan_ipv4": ip},
			Service:         &consulapi.AgentService{ID: "web", Service: "web", Port: 8080, Tags: []string{"demo"}},
			Checks: consulapi.HealthChecks{{Node: node, CheckID: "service:web", Name: "web HTTP on 8080", ServiceID: "web",
				Status: consulapi.HealthPassing, Output: "HTTP GET http://" + ip + ":8080/health: 200 OK", Type: "http"}}}
		if _, err := c.Catalog().Register(reg, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("register %s in the catalog: %w", node, err)
		}
	}
	e, _, err := c.Health().Service("web", "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "catalog    %d nodes registered with a web service (port 8080) and a passing check: health/service/web?passing has %d instances\n", nodes, len(e))
	return nil
}
