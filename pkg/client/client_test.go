package client

import "testing"

func TestPrecedenceOptionsOverEnvironment(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:7777")
	t.Setenv("CONSUL_HTTP_TOKEN", "env-token")
	// The environment is honoured as Consul's CLI does ...
	conf := config(Options{})
	if conf.Address != "127.0.0.1:7777" || conf.Token != "env-token" {
		t.Fatalf("from environment: address %q token %q", conf.Address, conf.Token)
	}
	// ... and options win over it.
	conf = config(Options{Address: "127.0.0.1:9999", Token: "flag-token", Datacenter: "dc7"})
	if conf.Address != "127.0.0.1:9999" || conf.Token != "flag-token" || conf.Datacenter != "dc7" {
		t.Fatalf("from options: address %q token %q dc %q", conf.Address, conf.Token, conf.Datacenter)
	}
	if _, err := New(Options{}); err != nil {
		t.Fatalf("New: %v", err)
	}
}

func TestDefaultsWithoutEnvironment(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "")
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	if conf := config(Options{}); conf.Address != "localhost:8500" || conf.Token != "" {
		t.Fatalf("defaults: address %q token %q", conf.Address, conf.Token)
	}
}
