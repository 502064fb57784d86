package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/servertest"
)

func TestRunCatalogSmall(t *testing.T) {
	srv := servertest.Start(t)
	res, err := RunCatalog(context.Background(), CatalogOptions{
		Addr: srv.HTTPAddr(), Nodes: 20, ServicesPerNode: 2, ServiceNames: 10, Registrars: 4,
		Watchers: 10, OtherWatchers: 10, Flips: 2, Readers: 1, GetRate: 100, Prefix: "t",
		ServerPID: os.Getpid(), IdleWait: time.Millisecond, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Registrations != 40 || res.RegErrors != 0 || res.Seen != 20 || res.Missed != 0 || res.OthersWoken != 0 {
		t.Fatalf("result:\n%s\nwant 40 registrations, 20 answers seen, none missed, no other watcher woken", res)
	}
	if res.Gets == 0 || res.GetErrors != 0 || res.IdleRSS == 0 {
		t.Fatalf("result:\n%s\nwant GETs without errors and an RSS", res)
	}
	// Its nodes are gone at the end.
	nodes, _, err := srv.Client.Catalog().Nodes(nil)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes after the benchmark = %d, %v; want the server's own alone", len(nodes), err)
	}
}

func TestCatalogOptionsRefused(t *testing.T) {
	for _, o := range []CatalogOptions{
		{},
		{Addr: "x", Nodes: 1, ServicesPerNode: 1, ServiceNames: 1, Registrars: 1, Flips: 1, Prefix: "p"},
		{Addr: "x", Nodes: 1, ServicesPerNode: 1, ServiceNames: 2, Registrars: 1, Flips: 1},
		{Addr: "x", Nodes: 1, ServicesPerNode: 1, ServiceNames: 2, Registrars: 1, Flips: 1, Prefix: "p", GetRate: -1},
	} {
		if _, err := RunCatalog(context.Background(), o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}
