// Package httpcatalog is a kvxdns.Catalog over the HTTP API of kvx (or
// Consul) servers, for a process that holds no state store of its own (the
// agent). A service's instances are fetched on its first query, then kept
// current by one blocking query on /v1/health/service/:name per service
// asked, which stops after the service has not been asked for a while
// (Options.Idle); the node list likewise, on /v1/catalog/nodes. Queries are
// answered from that view, so a DNS query costs no HTTP request once the
// service is warm. When a refresh fails, the last answer is kept (stale is
// better than nothing for DNS) and the watch retries with backoff; given
// several servers (Options.Servers, an agent's -join list), reads move to
// the next one when one fails.
package httpcatalog
