package state

import (
	"fmt"
	"slices"
	"sort"

	memdb "github.com/hashicorp/go-memdb"
)

// The catalog reads. Each returns the index of its answer by Consul's rules
// and adds to ws the channels that close when that answer may change. The
// queries on one service or one node watch only that service's or node's
// own index entry, which every write that changes their answer moves (see
// catalog_write.go): a watcher of one service is woken by nothing else.

func (r *ReadTxn) iter(ws memdb.WatchSet, table, index string, args ...any) memdb.ResultIterator {
	it, err := r.txn.Get(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("%s %s %v: %v", table, index, args, err))
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	return it
}

func (r *ReadTxn) firstRaw(table, index string, args ...any) any {
	raw, err := r.txn.First(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("%s %s %v: %v", table, index, args, err))
	}
	return raw
}

// ownIndex returns the value of a service's or node's index entry, watching it.
func (r *ReadTxn) ownIndex(ws memdb.WatchSet, name string) (uint64, bool) {
	ch, raw, err := r.txn.FirstWatch(tableIndexes, "id", name)
	if err != nil {
		panic(fmt.Sprintf("index %s: %v", name, err))
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return 0, false
	}
	return raw.(*tableIndex).Value, true
}

// tableIndexWatch returns a table's index, watching it.
func (r *ReadTxn) tableIndexWatch(ws memdb.WatchSet, tables ...string) uint64 {
	var max uint64
	for _, t := range tables {
		if v, _ := r.ownIndex(ws, t); v > max {
			max = v
		}
	}
	return max
}

// ServiceIndex is the index of a query on one service: the service's own
// index (which a removed service keeps), or, for a service that never
// existed, the catalog's (nodes and services), as Consul answers.
func (r *ReadTxn) ServiceIndex(ws memdb.WatchSet, service string) uint64 {
	if idx, ok := r.ownIndex(ws, serviceIndexName(service)); ok {
		return idx
	}
	return r.tableIndexWatch(ws, tableNodes, tableServices)
}

// Node returns a node, or nil.
func (r *ReadTxn) Node(name string) *Node {
	if raw := r.firstRaw(tableNodes, "id", name); raw != nil {
		return raw.(*Node)
	}
	return nil
}

// Nodes returns every node in name order.
func (r *ReadTxn) Nodes(ws memdb.WatchSet) (uint64, []*Node) {
	idx := r.tableIndexWatch(ws, tableNodes)
	out := []*Node{}
	it := r.iter(nil, tableNodes, "id_prefix", "")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Node))
	}
	return idx, out
}

// Services returns every service name with the union of its instances'
// tags, in order, and the services table's index.
// With keep, only the instances it keeps count.
func (r *ReadTxn) Services(ws memdb.WatchSet, keep func(Instance) bool) (uint64, map[string][]string) {
	idx := r.tableIndexWatch(ws, tableServices)
	if keep != nil {
		idx = r.tableIndexWatch(ws, tableServices, tableNodes)
	}
	out := map[string][]string{}
	it := r.iter(nil, tableServices, "id_prefix", "")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		s := raw.(*Service)
		if keep != nil && !keep(Instance{Node: r.Node(s.Node), Service: s}) {
			continue
		}
		tags, ok := out[s.Service]
		if !ok {
			tags = []string{}
		}
		for _, t := range s.Tags {
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
		out[s.Service] = tags
	}
	for _, tags := range out {
		sort.Strings(tags)
	}
	return idx, out
}

// Instance is a service instance with its node.
type Instance struct {
	Node    *Node
	Service *Service
}

// ServiceNodes returns the instances of a service in node order, and the
// service's index.
func (r *ReadTxn) ServiceNodes(ws memdb.WatchSet, service string) (uint64, []Instance) {
	idx := r.ServiceIndex(ws, service)
	var out []Instance
	it := r.iter(nil, tableServices, "service", service)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		s := raw.(*Service)
		if n := r.Node(s.Node); n != nil {
			out = append(out, Instance{Node: n, Service: s})
		}
	}
	return idx, out
}

// HealthInstance is a service instance with its node and the checks that
// decide its health: the node's own and the instance's.
type HealthInstance struct {
	Node    *Node
	Service *Service
	Checks  []*Check
}

// Passing reports whether every check of the instance is passing.
func (h *HealthInstance) Passing() bool {
	for _, c := range h.Checks {
		if c.Status != HealthPassing {
			return false
		}
	}
	return true
}

// ServiceHealth returns the instances of a service with their checks, in
// node order, and the service's index.
func (r *ReadTxn) ServiceHealth(ws memdb.WatchSet, service string) (uint64, []HealthInstance) {
	idx, instances := r.ServiceNodes(ws, service)
	out := make([]HealthInstance, 0, len(instances))
	for _, in := range instances {
		h := HealthInstance{Node: in.Node, Service: in.Service, Checks: []*Check{}}
		for _, c := range r.nodeChecks(in.Node.Node) {
			if c.ServiceID == "" || c.ServiceID == in.Service.ID {
				h.Checks = append(h.Checks, c)
			}
		}
		out = append(out, h)
	}
	return idx, out
}

// NodeServices returns a node (nil when missing) and its services, and the
// node's own index: 0 for a node that never existed, as Consul answers.
func (r *ReadTxn) NodeServices(ws memdb.WatchSet, node string) (uint64, *Node, []*Service) {
	idx, _ := r.ownIndex(ws, nodeIndexName(node))
	n := r.Node(node)
	if n == nil {
		return idx, nil, nil
	}
	out := []*Service{}
	it := r.iter(nil, tableServices, "id_prefix", node, "")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Service))
	}
	return idx, n, out
}

// NodeChecks returns the checks of a node, in CheckID order, and the node's
// own index.
func (r *ReadTxn) NodeChecks(ws memdb.WatchSet, node string) (uint64, []*Check) {
	idx, _ := r.ownIndex(ws, nodeIndexName(node))
	if idx == 0 {
		idx = r.tableIndexWatch(ws, tableChecks)
	}
	return idx, append([]*Check{}, r.nodeChecks(node)...)
}

// nodeChecks returns a node's checks in CheckID order.
func (r *ReadTxn) nodeChecks(node string) []*Check {
	var out []*Check
	it := r.iter(nil, tableChecks, "id_prefix", node, "")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Check))
	}
	return out
}

// ServiceChecks returns the checks of a service's instances, in node order,
// and the service's index.
func (r *ReadTxn) ServiceChecks(ws memdb.WatchSet, service string) (uint64, []*Check) {
	idx, instances := r.ServiceNodes(ws, service)
	out := []*Check{}
	for _, in := range instances {
		for _, c := range r.nodeChecks(in.Node.Node) {
			if c.ServiceID == in.Service.ID {
				out = append(out, c)
			}
		}
	}
	return idx, out
}

// ChecksInState returns the checks in a state (HealthAny for all), in node
// and CheckID order, and the checks table's index.
func (r *ReadTxn) ChecksInState(ws memdb.WatchSet, status string) (uint64, []*Check) {
	idx := r.tableIndexWatch(ws, tableChecks)
	out := []*Check{}
	it := r.iter(nil, tableChecks, "id_prefix", "")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if c := raw.(*Check); status == HealthAny || c.Status == status {
			out = append(out, c)
		}
	}
	return idx, out
}

// CatalogIndex is the index of the whole catalog.
func (r *ReadTxn) CatalogIndex() uint64 {
	return maxIndexTxn(r.txn, tableNodes, tableServices, tableChecks)
}
