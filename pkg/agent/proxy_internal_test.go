package agent

import (
	"context"
	"net"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
)

// A forwarded write whose server cannot be reached is sent to the next
// server (it was never sent), and so is a GET.
func TestProxyMovesPastAnUnreachableServer(t *testing.T) {
	srv := servertest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	a, err := New(Options{Join: []string{dead, srv.HTTPAddr()}, NodeName: "proxy-test", HTTPAddr: "127.0.0.1:0", Advertise: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	addr, err := a.HTTPAddr(wctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	for i, op := range []func() error{
		func() error {
			_, err := c.KV().Put(&consulapi.KVPair{Key: "k", Value: []byte("v")}, nil)
			return err
		},
		func() error {
			p, _, err := c.KV().Get("k", nil)
			if err == nil && (p == nil || string(p.Value) != "v") {
				t.Errorf("get = %+v", p)
			}
			return err
		},
	} {
		a.srv.cur.Store(0) // the dead server first
		if err := op(); err != nil {
			t.Fatalf("op %d through the agent with the dead server first: %v", i, err)
		}
		if a.srv.cur.Load() != 1 {
			t.Errorf("op %d: the agent did not move on to the live server", i)
		}
	}
}
