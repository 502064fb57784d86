package dns

import "context"

// Catalog is what the DNS server reads. Names are case-insensitive. An
// error makes the answer SERVFAIL. The slices returned are read-only for
// the caller, so an implementation may hand out the same ones to many
// queries.
type Catalog interface {
	// ServiceInstances returns every instance of a service, with its
	// health; none (and no error) for an unknown service.
	ServiceInstances(ctx context.Context, service string) ([]Instance, error)
	// Node returns a node, or nil for an unknown one.
	Node(ctx context.Context, name string) (*Node, error)
	// Nodes returns every node (for PTR queries).
	Nodes(ctx context.Context) ([]Node, error)
}

// The aggregated health of an instance: the worst status of its node's
// checks and its own.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// Instance is one service instance and its node.
type Instance struct {
	Node        string
	NodeAddress string
	ID          string
	Service     string
	Address     string // the service's own address; "" for the node's
	Port        int
	Tags        []string
	Status      string // StatusPassing, StatusWarning or StatusCritical
	// Weights are the SRV weights when passing and when warning; 0 means 1.
	WeightPassing int
	WeightWarning int
}

// Node is a catalog node.
type Node struct {
	Name    string
	Address string
	Meta    map[string]string
}

// WorstStatus aggregates check statuses as Consul does: critical beats
// warning beats passing; an unknown status counts as critical.
func WorstStatus(statuses ...string) string {
	worst := StatusPassing
	for _, s := range statuses {
		switch s {
		case StatusPassing:
		case StatusWarning:
			if worst == StatusPassing {
				worst = StatusWarning
			}
		default:
			return StatusCritical
		}
	}
	return worst
}
