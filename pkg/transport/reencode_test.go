package transport

import (
	"path/filepath"
	"testing"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// TestPushReencodes: the codec is part of what a push asks for. The same
// content pushed with another -z is stored again with that codec (flags of
// data and checksum follow), pushed again with the same codec it is left
// alone; nodes that have the file do not rewrite it.
func TestPushReencodes(t *testing.T) {
	srv := servertest.Start(t)
	content := lines(50, "re")
	for _, prefix := range []string{DefaultPrefix, KvexpressPrefix} {
		t.Run(prefix, func(t *testing.T) {
			c := newClient(srv, "n")
			c.Prefix = prefix
			target := filepath.Join(t.TempDir(), "hosts")
			steps := []struct {
				codec     Codec
				uploaded  bool
				reencoded bool
				previous  Codec
			}{
				{Plain, true, false, ""},
				{Gzip, true, true, Plain},
				{Gzip, false, false, Gzip},
				{Brotli, true, true, Gzip},
				{Plain, true, true, Brotli},
				{Plain, false, false, Plain},
			}
			for i, st := range steps {
				res := mustPush(t, c, PushOptions{Key: "re/hosts", Content: content, Codec: st.codec, Recode: true})
				if res.Uploaded != st.uploaded || res.Reencoded != st.reencoded || (st.reencoded && res.PreviousCodec != st.previous) {
					t.Fatalf("step %d (%s): %+v, want uploaded=%v reencoded=%v previous=%s", i, st.codec, res, st.uploaded, st.reencoded, st.previous)
				}
				data, _, _ := srv.Client.KV().Get(prefix+"/re/hosts/data", nil)
				sum, _, _ := srv.Client.KV().Get(prefix+"/re/hosts/checksum", nil)
				if got := codecOf(data, string(sum.Value)); got != st.codec {
					t.Fatalf("step %d: data stored as %s, want %s", i, got, st.codec)
				}
				if prefix == DefaultPrefix && sum.Flags != data.Flags {
					t.Fatalf("step %d: checksum flags %#x do not mirror data flags %#x", i, sum.Flags, data.Flags)
				}
				d := c.Deliver(ctx, DeliverOptions{Key: "re/hosts", Path: target})
				want := ResultUnchanged
				if i == 0 {
					want = ResultDelivered
				}
				if d.Err != nil || d.Result != want {
					t.Fatalf("step %d: delivery %+v, want %s", i, d, want)
				}
			}
			if string(readFile(t, target)) != string(content) {
				t.Fatal("target content")
			}
			// Without Recode (no -z given) the stored codec is kept.
			res := mustPush(t, c, PushOptions{Key: "re/hosts", Content: content, Codec: Gzip})
			if res.Uploaded || res.PreviousCodec != Plain {
				t.Fatalf("same content, other codec, no Recode: %+v, want unchanged with the stored codec", res)
			}
		})
	}
}
