package hostsgen_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/hostsgen"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// instances5000 is 5,000 passing instances of 50 services, two tags each,
// every one on its own node.
func instances5000() []hostsgen.Instance {
	out := make([]hostsgen.Instance, 0, 5000)
	for i := range 5000 {
		out = append(out, hostsgen.Instance{
			Node: fmt.Sprintf("node-%04d", i), NodeAddress: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			ID: "svc", Service: fmt.Sprintf("service-%02d", i%50), Tags: []string{"v1", fmt.Sprintf("shard%d", i%4)}, Passing: true,
		})
	}
	return out
}

// BenchmarkGenerate5000: the hosts file of 5,000 instances, from instances
// in memory (15,000 entries, with -nodes 20,000).
func BenchmarkGenerate5000(b *testing.B) {
	in := instances5000()
	for _, nodes := range []bool{false, true} {
		b.Run(fmt.Sprintf("nodes=%v", nodes), func(b *testing.B) {
			for b.Loop() {
				res := hostsgen.Generate(in, hostsgen.Options{Nodes: nodes})
				if res.Instances != 5000 {
					b.Fatal(res.Instances)
				}
			}
		})
	}
}

// BenchmarkFetchAndGenerate5000: what one `hostsgen` run does against a
// server holding 5,000 instances of 50 services: catalog/services, 50
// health/service reads (8 at a time), generation.
func BenchmarkFetchAndGenerate5000(b *testing.B) {
	srv := servertest.Start(b)
	in := instances5000()
	var wg sync.WaitGroup
	next := make(chan hostsgen.Instance)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range next {
				_, err := srv.Client.Catalog().Register(&consulapi.CatalogRegistration{Node: x.Node, Address: x.NodeAddress,
					Service: &consulapi.AgentService{ID: x.ID, Service: x.Service, Tags: x.Tags, Port: 80},
					Checks:  consulapi.HealthChecks{{Node: x.Node, CheckID: "c", Name: "c", Status: "passing", ServiceID: x.ID}}}, nil)
				if err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for _, x := range in {
		next <- x
	}
	close(next)
	wg.Wait()
	o := hostsgen.Options{ExcludeServices: []string{"consul"}}
	b.ResetTimer()
	for b.Loop() {
		got, err := hostsgen.Fetch(context.Background(), srv.Client, o, true)
		if err != nil {
			b.Fatal(err)
		}
		if res := hostsgen.Generate(got, o); res.Instances != 5000 {
			b.Fatalf("%d instances", res.Instances)
		}
	}
}
