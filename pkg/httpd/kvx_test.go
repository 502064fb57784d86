package httpd_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// TestKVXBlockingQueryFreedOnDisconnect: a real kvx server (served by
// httpd) frees a blocking query whose client closes its connection, and a
// blocking query through the consul/api client is woken by a write.
func TestKVXBlockingQueryFreedOnDisconnect(t *testing.T) {
	srv := servertest.Start(t)
	kv := srv.Client.KV()
	if _, err := kv.Put(&consulapi.KVPair{Key: "app/config", Value: []byte("v1")}, nil); err != nil {
		t.Fatal(err)
	}
	_, meta, err := kv.Get("app/config", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	base := srv.BlockingQueries()

	c, err := net.Dial("tcp", srv.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /v1/kv/app/config?index=%d&wait=10m HTTP/1.1\r\nHost: kvx\r\n\r\n", meta.LastIndex)
	waitFor("the raw blocking query to wait", func() bool { return srv.BlockingQueries() == base+1 })
	c.Close()
	waitFor("the blocking query to be freed", func() bool { return srv.BlockingQueries() == base })

	// consul/api's blocking query, woken by a write.
	got := make(chan string, 1)
	go func() {
		p, _, err := kv.Get("app/config", (&consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute}).WithContext(context.Background()))
		if err != nil || p == nil {
			got <- fmt.Sprint("error: ", err)
			return
		}
		got <- string(p.Value)
	}()
	waitFor("consul/api's blocking query to wait", func() bool { return srv.BlockingQueries() == base+1 })
	if _, err := kv.Put(&consulapi.KVPair{Key: "app/config", Value: []byte("v2")}, nil); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "v2" {
		t.Fatalf("blocking query answered %q, want v2", v)
	}

	// A chunked upload (curl's way) goes through net/http inside httpd.
	req, err := http.NewRequest("PUT", "http://"+srv.HTTPAddr()+"/v1/kv/app/chunked", io.MultiReader(strings.NewReader("chun"), strings.NewReader("ked")))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // sent chunked
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "true" {
		t.Fatalf("chunked PUT: %d %q", resp.StatusCode, body)
	}
	p, _, err := kv.Get("app/chunked", nil)
	if err != nil || p == nil || string(p.Value) != "chunked" {
		t.Fatalf("chunked value: %+v, %v", p, err)
	}
}
