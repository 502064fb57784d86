package transport

import (
	"testing"

	"github.com/kvxproject/kvx/pkg/checksum"
)

// FuzzDecode: whatever a KV value holds, decoding never panics, and content
// is only ever returned when it hashes to the checksum.
func FuzzDecode(f *testing.F) {
	content := []byte("10.0.0.1 a\n10.0.0.2 b\n")
	for _, c := range []Codec{Plain, Gzip, Zstd, Brotli} {
		for _, kvexpress := range []bool{false, true} {
			if stored, flags, err := encode(c, content, kvexpress); err == nil {
				f.Add(flags, stored, checksum.Of(content))
			}
		}
	}
	f.Add(FlagManifest, []byte(`{"v":1,"size":3,"chunks":["x"]}`), checksum.Of(nil))
	f.Fuzz(func(t *testing.T, flags uint64, stored []byte, sum string) {
		out, err := decode(flags, stored, sum)
		if err == nil && checksum.Of(out) != sum {
			t.Fatalf("decode returned content that does not hash to %s", sum)
		}
		if flags&FlagManifest != 0 {
			if m, err := parseManifest(stored); err == nil {
				for _, c := range m.Chunks {
					if !checksum.Valid(c) {
						t.Fatalf("manifest accepted chunk name %q", c)
					}
				}
			}
		}
	})
}
