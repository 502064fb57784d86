package render

import (
	"testing"

	consulapi "github.com/hashicorp/consul/api"
)

// seedCatalog registers the nodes and services the corpus's svc_*
// templates read: web on n1 (passing), n2 (warning, its own service
// address) and n3 (critical); db on n1 (passing).
func seedCatalog(t *testing.T, c *consulapi.Client) {
	t.Helper()
	reg := func(node, addr, rack string, svc *consulapi.AgentService, status string) {
		r := &consulapi.CatalogRegistration{
			Node: node, Address: addr, NodeMeta: map[string]string{"rack": rack}, Service: svc,
			Check: &consulapi.AgentCheck{Node: node, CheckID: svc.Service + "-alive", Name: svc.Service + " alive", Status: status, ServiceID: svc.ID},
		}
		if _, err := c.Catalog().Register(r, nil); err != nil {
			t.Fatalf("register %s on %s: %v", svc.ID, node, err)
		}
	}
	reg("n1", "10.0.1.1", "r1", &consulapi.AgentService{ID: "web1", Service: "web", Tags: []string{"primary"}, Port: 80, Meta: map[string]string{"version": "1"}}, "passing")
	reg("n2", "10.0.1.2", "r2", &consulapi.AgentService{ID: "web2", Service: "web", Tags: []string{"canary"}, Port: 8080, Address: "10.9.9.2", Meta: map[string]string{"version": "2"}}, "warning")
	reg("n3", "10.0.1.3", "r1", &consulapi.AgentService{ID: "web3", Service: "web", Port: 80}, "critical")
	reg("n1", "10.0.1.1", "r1", &consulapi.AgentService{ID: "db1", Service: "db", Port: 5432, Meta: map[string]string{"role": "primary"}}, "passing")
}
