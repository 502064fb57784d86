package state

import (
	"fmt"
	"slices"
	"strings"
)

// The catalog writes. Each runs in a write transaction of its own (the FSM
// aborts it on error), checks everything before it changes anything, and
// writes only what differs, so that a re-registration of the same data moves
// no index and wakes nobody. What a change moves:
//
//   - a node: the nodes table, the node's entry, and every service on it
//     (a health query on those services returns the node);
//   - a service instance: the services table, the service's entry, the node's;
//   - a check of a service instance: the checks table, that service's entry,
//     the node's; a check of the node: every service on the node too.

func (w *WriteTxn) first(table, index string, args ...any) any {
	raw, err := w.txn.First(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("%s %s %v: %v", table, index, args, err))
	}
	return raw
}

func (w *WriteTxn) all(table, index string, args ...any) []any {
	it, err := w.txn.Get(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("%s %s %v: %v", table, index, args, err))
	}
	var out []any
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw)
	}
	return out
}

func (w *WriteTxn) remove(table string, obj any) {
	if err := w.txn.Delete(table, obj); err != nil {
		panic(fmt.Sprintf("delete from %s: %v", table, err))
	}
}

func (w *WriteTxn) node(name string) *Node {
	if raw := w.first(tableNodes, "id", name); raw != nil {
		return raw.(*Node)
	}
	return nil
}

func (w *WriteTxn) service(node, id string) *Service {
	if raw := w.first(tableServices, "id", node, id); raw != nil {
		return raw.(*Service)
	}
	return nil
}

func (w *WriteTxn) nodeServices(node string) []*Service {
	raws := w.all(tableServices, "id_prefix", node, "")
	out := make([]*Service, len(raws))
	for i, raw := range raws {
		out[i] = raw.(*Service)
	}
	return out
}

func (w *WriteTxn) nodeChecks(node string) []*Check {
	raws := w.all(tableChecks, "id_prefix", node, "")
	out := make([]*Check, len(raws))
	for i, raw := range raws {
		out[i] = raw.(*Check)
	}
	return out
}

// serviceChecks returns the checks of one service instance.
func (w *WriteTxn) serviceChecks(node, serviceID string) []*Check {
	var out []*Check
	for _, c := range w.nodeChecks(node) {
		if strings.EqualFold(c.ServiceID, serviceID) {
			out = append(out, c)
		}
	}
	return out
}

// touchService moves a service's own index.
func (w *WriteTxn) touchService(name string) { w.setIndex(serviceIndexName(name), w.index) }

// touchNode moves a node's own index, and with everyServices the index of
// every service on it.
func (w *WriteTxn) touchNode(node string, everyService bool) {
	w.setIndex(nodeIndexName(node), w.index)
	if everyService {
		for _, s := range w.nodeServices(node) {
			w.touchService(s.Service)
		}
	}
}

// Register applies one catalog registration.
func (w *WriteTxn) Register(r *Registration) error {
	if err := w.checkRegistration(r); err != nil {
		return err
	}
	name := r.Node.Node
	old := w.node(name)
	if old == nil || (!r.SkipNodeUpdate && !r.Node.sameContent(old)) {
		n := r.Node
		n.CreateIndex, n.ModifyIndex = w.index, w.index
		if old != nil {
			n.Node = old.Node // the node keeps the spelling it was created with
			n.CreateIndex = old.CreateIndex
		}
		w.insert(tableNodes, &n)
		w.setIndex(tableNodes, w.index)
		w.touchNode(name, true)
	}
	if r.Service != nil {
		w.ensureService(name, r.Service)
	}
	for _, c := range r.Checks {
		w.ensureCheck(name, c)
	}
	return nil
}

// checkRegistration refuses what Consul's state store refuses, before
// anything is written.
func (w *WriteTxn) checkRegistration(r *Registration) error {
	name := r.Node.Node
	if name == "" {
		return refuse("Must provide node")
	}
	if s := r.Service; s != nil {
		if old := w.service(name, s.ID); old != nil && !strings.EqualFold(old.Service, s.Service) {
			return refuse("Service ID %q on node %q is already registered for service %q", s.ID, name, old.Service)
		}
	}
	for _, c := range r.Checks {
		if c.Node != "" && !strings.EqualFold(c.Node, name) {
			return refuse("Check %q refers to node %q, not %q", c.CheckID, c.Node, name)
		}
		if c.ServiceID == "" || (r.Service != nil && strings.EqualFold(r.Service.ID, c.ServiceID)) {
			continue
		}
		if w.service(name, c.ServiceID) == nil {
			return refuse("Missing service registration")
		}
	}
	return nil
}

func (w *WriteTxn) ensureService(node string, in *Service) {
	s := *in
	s.Node = node
	s.Tags = slices.Clone(s.Tags)
	s.CreateIndex, s.ModifyIndex = w.index, w.index
	old := w.service(node, s.ID)
	if old != nil {
		if s.sameContent(old) {
			return
		}
		s.CreateIndex = old.CreateIndex
	}
	w.insert(tableServices, &s)
	w.setIndex(tableServices, w.index)
	w.touchService(s.Service)
	w.touchNode(node, false)
	if old == nil || slices.Equal(old.Tags, s.Tags) {
		return
	}
	// The service's checks carry its tags.
	for _, old := range w.serviceChecks(node, s.ID) {
		c := *old
		c.ServiceTags = append([]string{}, s.Tags...)
		c.ModifyIndex = w.index
		w.insert(tableChecks, &c)
		w.setIndex(tableChecks, w.index)
	}
}

func (w *WriteTxn) ensureCheck(node string, in *Check) {
	c := *in
	c.Node = node
	if c.Status == "" {
		c.Status = HealthCritical
	}
	c.ServiceName, c.ServiceTags = "", []string{}
	var svc *Service
	if c.ServiceID != "" {
		svc = w.service(node, c.ServiceID)
		c.ServiceID, c.ServiceName, c.ServiceTags = svc.ID, svc.Service, append([]string{}, svc.Tags...)
	}
	c.CreateIndex, c.ModifyIndex = w.index, w.index
	if old := w.first(tableChecks, "id", node, c.CheckID); old != nil {
		o := old.(*Check)
		if c.sameContent(o) {
			return
		}
		c.CreateIndex = o.CreateIndex
		if o.ServiceID != "" && !strings.EqualFold(o.ServiceID, c.ServiceID) {
			w.touchService(o.ServiceName) // the check moved away from this service
		}
	}
	w.insert(tableChecks, &c)
	w.setIndex(tableChecks, w.index)
	if svc != nil {
		w.touchService(svc.Service)
	}
	w.touchNode(node, svc == nil)
	if c.Status == HealthCritical {
		w.invalidateCheck(node, c.CheckID)
	}
}

// Deregister applies one catalog deregistration. Removing what does not
// exist is not an error, as in Consul.
func (w *WriteTxn) Deregister(d *Deregistration) error {
	if d.Node == "" {
		return refuse("Must provide node")
	}
	switch {
	case d.ServiceID != "":
		w.deleteService(d.Node, d.ServiceID)
	case d.CheckID != "":
		w.deleteCheck(d.Node, d.CheckID)
	default:
		w.deleteNode(d.Node)
	}
	return nil
}

func (w *WriteTxn) deleteCheck(node, id string) {
	raw := w.first(tableChecks, "id", node, id)
	if raw == nil {
		return
	}
	c := raw.(*Check)
	w.remove(tableChecks, c)
	w.setIndex(tableChecks, w.index)
	if c.ServiceID != "" {
		w.touchService(c.ServiceName)
	}
	w.touchNode(node, c.ServiceID == "")
	w.invalidateCheck(node, c.CheckID)
}

func (w *WriteTxn) deleteService(node, id string) {
	s := w.service(node, id)
	if s == nil {
		return
	}
	for _, c := range w.serviceChecks(node, s.ID) {
		w.remove(tableChecks, c)
		w.setIndex(tableChecks, w.index)
		w.invalidateCheck(node, c.CheckID)
	}
	w.remove(tableServices, s)
	w.setIndex(tableServices, w.index)
	w.touchService(s.Service)
	w.touchNode(node, false)
}

func (w *WriteTxn) deleteNode(name string) {
	n := w.node(name)
	if n == nil {
		return
	}
	w.invalidateNode(name)
	if checks := w.nodeChecks(name); len(checks) > 0 {
		for _, c := range checks {
			w.remove(tableChecks, c)
		}
		w.setIndex(tableChecks, w.index)
	}
	services := w.nodeServices(name)
	for _, s := range services {
		w.remove(tableServices, s)
		w.touchService(s.Service)
	}
	if len(services) > 0 {
		w.setIndex(tableServices, w.index)
	}
	w.remove(tableNodes, n)
	w.setIndex(tableNodes, w.index)
	w.touchNode(name, false)
}
