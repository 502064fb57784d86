package client_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/servertest"
)

func TestGetRaw(t *testing.T) {
	srv := servertest.Start(t)
	kv, err := client.NewKV(client.Options{Address: srv.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	value := []byte("binary\x00\xff\nvalue with \"quotes\"")
	for _, key := range []string{"raw/plain", "raw/with space/and%percent", "raw/ünïcode"} {
		if _, err := kv.Put(&consulapi.KVPair{Key: key, Value: value}, nil); err != nil {
			t.Fatal(err)
		}
		got, found, err := kv.GetRaw(context.Background(), key)
		if err != nil || !found || !bytes.Equal(got, value) {
			t.Fatalf("GetRaw(%q) = %q, %v, %v", key, got, found, err)
		}
	}
	if got, found, err := kv.GetRaw(context.Background(), "raw/missing"); err != nil || found || got != nil {
		t.Fatalf("missing key: %q, %v, %v", got, found, err)
	}
	// Errors name the key and the status.
	bad, _ := client.NewKV(client.Options{Address: srv.HTTPAddr(), Datacenter: "nowhere"})
	if _, _, err := bad.GetRaw(context.Background(), "raw/plain"); err == nil || !strings.Contains(err.Error(), "raw/plain") {
		t.Fatalf("unknown datacenter: %v", err)
	}
}
