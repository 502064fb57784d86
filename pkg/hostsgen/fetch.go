package hostsgen

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	consulapi "github.com/hashicorp/consul/api"
)

// fetchParallel is how many services are fetched at once.
const fetchParallel = 8

// Fetch reads the instances of every service the options may select, with
// their health, through the HTTP API: /v1/catalog/services, then
// /v1/health/service/:name for each service not excluded by name or tag.
// With stale, any server answers.
func Fetch(ctx context.Context, api *consulapi.Client, o Options, stale bool) ([]Instance, error) {
	q := (&consulapi.QueryOptions{AllowStale: stale}).WithContext(ctx)
	services, _, err := api.Catalog().Services(q)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	var names []string
	for name, tags := range services {
		probe := Instance{Service: name, Tags: tags}
		meta := o.NodeMeta
		o.NodeMeta = nil // known per instance only
		keep := o.selected(&probe)
		o.NodeMeta = meta
		if keep {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	results := make([][]Instance, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, fetchParallel)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = fetchService(api, name, q)
		}()
	}
	wg.Wait()
	var out []Instance
	for i := range names {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, results[i]...)
	}
	return out, nil
}

// healthEntry is the part of a /v1/health/service answer hostsgen reads:
// decoding only these fields costs about half of decoding the API's
// ServiceEntry.
type healthEntry struct {
	Node struct {
		Node    string
		Address string
		Meta    map[string]string
	}
	Service struct {
		ID      string
		Service string
		Address string
		Tags    []string
	}
	Checks []struct{ Status string }
}

func fetchService(api *consulapi.Client, name string, q *consulapi.QueryOptions) ([]Instance, error) {
	var entries []healthEntry
	if _, err := api.Raw().Query("/v1/health/service/"+name, &entries, q); err != nil {
		return nil, fmt.Errorf("service %s: %w", name, err)
	}
	out := make([]Instance, 0, len(entries))
	for _, e := range entries {
		if e.Node.Node == "" || e.Service.ID == "" {
			continue
		}
		passing := true
		for _, c := range e.Checks {
			if !strings.EqualFold(c.Status, consulapi.HealthPassing) {
				passing = false
			}
		}
		out = append(out, Instance{
			Node: e.Node.Node, NodeAddress: e.Node.Address, NodeMeta: e.Node.Meta,
			ID: e.Service.ID, Service: e.Service.Service, Address: e.Service.Address, Tags: e.Service.Tags,
			Passing: passing,
		})
	}
	return out, nil
}
