package bench

import (
	"context"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/servertest"
)

func TestRunDNSSmall(t *testing.T) {
	srv := servertest.Start(t, servertest.WithDNS())
	res, err := RunDNS(context.Background(), DNSOptions{
		Addr: srv.HTTPAddr(), DNSAddr: srv.DNSAddr(), Instances: 5, Service: "bench-web", Clients: 2,
		Duration: 300 * time.Millisecond, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Queries == 0 || res.Errors != 0 || res.Answers != 3 || res.P99 == 0 {
		t.Fatalf("result: %s; want queries, no errors, 3 answers each (the UDP answer limit)", res)
	}
	// Its instances are gone at the end.
	nodes, _, err := srv.Client.Catalog().Nodes(nil)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes after the benchmark = %d, %v; want the server's own alone", len(nodes), err)
	}
}

func TestDNSOptionsRefused(t *testing.T) {
	for _, o := range []DNSOptions{
		{},
		{DNSAddr: "127.0.0.1:1", Service: "s", Clients: 0, Duration: time.Second},
		{DNSAddr: "127.0.0.1:1", Service: "s", Clients: 1, Duration: time.Second, Instances: -1},
	} {
		if _, err := RunDNS(context.Background(), o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}
