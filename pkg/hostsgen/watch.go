package hostsgen

import (
	"context"
	"log/slog"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// Watch runs blocking queries on the catalog's indexes until ctx is done
// and sends on the returned channel (buffered, one pending signal) each
// time one of them moved: /v1/catalog/services (services added, removed,
// retagged or moved), /v1/catalog/nodes (a node's address or meta) and
// /v1/health/state/any (any check's status). Three long-polls in all,
// whatever the size of the catalog. A failing query is retried with
// backoff, and its first success after a failure counts as a change; so
// do the first answers, so that a change between a caller's first
// generation and the start of the watch is not missed.
func Watch(ctx context.Context, api *consulapi.Client, stale bool, logger *slog.Logger) <-chan struct{} {
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	type query func(*consulapi.QueryOptions) (*consulapi.QueryMeta, error)
	queries := map[string]query{
		"catalog/services": func(q *consulapi.QueryOptions) (*consulapi.QueryMeta, error) {
			_, m, err := api.Catalog().Services(q)
			return m, err
		},
		"catalog/nodes": func(q *consulapi.QueryOptions) (*consulapi.QueryMeta, error) {
			_, m, err := api.Catalog().Nodes(q)
			return m, err
		},
		"health/state/any": func(q *consulapi.QueryOptions) (*consulapi.QueryMeta, error) {
			_, m, err := api.Health().State(consulapi.HealthAny, q)
			return m, err
		},
	}
	for name, run := range queries {
		go func() {
			var index uint64
			backoff := 100 * time.Millisecond
			failed := false
			for ctx.Err() == nil {
				m, err := run((&consulapi.QueryOptions{AllowStale: stale, WaitIndex: index, WaitTime: 5 * time.Minute}).WithContext(ctx))
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					logger.Warn("hostsgen: watch failed", "query", name, "err", err, "retry_in", backoff)
					failed = true
					select {
					case <-ctx.Done():
						return
					case <-time.After(backoff):
					}
					backoff = min(2*backoff, 10*time.Second)
					continue
				}
				backoff = 100 * time.Millisecond
				if m.LastIndex != index || failed {
					signal()
				}
				failed = false
				if m.LastIndex < index {
					index = 0
				} else {
					index = m.LastIndex
				}
			}
		}()
	}
	return changed
}
