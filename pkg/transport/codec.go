package transport

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/klauspost/compress/zstd"

	"github.com/kvxproject/kvx/pkg/checksum"
)

// Codec is how content is stored. The KV flags of the data key say which,
// so a reader needs no flag of its own.
type Codec string

// Codecs. Gzip in the kvexpress layout is kvexpress's gzip+base64 text with
// flags 0 (what kvexpress before 1.16 reads with -z); brotli is what
// kvexpress 1.16 writes, with flags 1.
const (
	Plain  Codec = ""
	Gzip   Codec = "gzip"
	Zstd   Codec = "zstd"
	Brotli Codec = "brotli"
)

// KV flags of the data key. The low byte is the codec; FlagManifest marks a
// chunk manifest. 0 and 1 are kvexpress's values.
const (
	FlagPlain    uint64 = 0
	FlagBrotli   uint64 = 1
	FlagGzip     uint64 = 2
	FlagZstd     uint64 = 3
	FlagManifest uint64 = 1 << 8

	codecMask uint64 = 0xff
)

// ParseCodec reads a -z value.
func ParseCodec(s string) (Codec, error) {
	switch Codec(s) {
	case Plain, "none":
		return Plain, nil
	case Gzip, Zstd, Brotli:
		return Codec(s), nil
	}
	return Plain, fmt.Errorf("compression %q: want gzip, zstd, brotli or none", s)
}

// encode returns the stored form of content and its KV flags.
func encode(c Codec, content []byte, kvexpress bool) ([]byte, uint64, error) {
	var buf bytes.Buffer
	switch c {
	case Plain:
		return content, FlagPlain, nil
	case Gzip:
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(content)
		if err := zw.Close(); err != nil {
			return nil, 0, err
		}
		if kvexpress {
			return []byte(base64.StdEncoding.EncodeToString(buf.Bytes())), FlagPlain, nil
		}
		return buf.Bytes(), FlagGzip, nil
	case Zstd:
		if kvexpress {
			return nil, 0, fmt.Errorf("zstd: kvexpress readers cannot decode it; use gzip or brotli with --prefix %s", KvexpressPrefix)
		}
		zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
		if err != nil {
			return nil, 0, err
		}
		defer zw.Close()
		return zw.EncodeAll(content, nil), FlagZstd, nil
	case Brotli:
		bw := brotli.NewWriterLevel(&buf, brotli.BestCompression)
		bw.Write(content)
		if err := bw.Close(); err != nil {
			return nil, 0, err
		}
		return buf.Bytes(), FlagBrotli, nil
	}
	return nil, 0, fmt.Errorf("unknown codec %q", c)
}

// String names a codec as -z does.
func (c Codec) String() string {
	if c == Plain {
		return "none"
	}
	return string(c)
}

// codecOf says how a data key's value is stored, from its KV flags; flags
// 0 is plain, or kvexpress's gzip+base64 text when the value does not hash
// to sum (kvexpress marks both with 0).
func codecOf(p *consulapi.KVPair, sum string) Codec {
	switch p.Flags & codecMask {
	case FlagBrotli:
		return Brotli
	case FlagGzip:
		return Gzip
	case FlagZstd:
		return Zstd
	}
	if p.Flags&FlagManifest == 0 && checksum.Of(p.Value) != sum {
		return Gzip
	}
	return Plain
}

// maxDecoded bounds what a decoder may produce, so a hostile or corrupt
// value cannot exhaust memory (a zip bomb).
const maxDecoded = 1 << 30

// decode turns stored bytes back into content and checks it against sum.
// Flags 0 is plain, or kvexpress's gzip+base64 text when the plain bytes do
// not match the checksum.
func decode(flags uint64, stored []byte, sum string) ([]byte, error) {
	var (
		out []byte
		err error
	)
	switch flags & codecMask {
	case FlagPlain:
		if checksum.Of(stored) == sum {
			return stored, nil
		}
		gz, berr := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(stored)))
		if berr != nil || len(gz) < 2 || gz[0] != 0x1f || gz[1] != 0x8b {
			return nil, checksum.Verify(stored, sum)
		}
		out, err = readAll(gzip.NewReader(bytes.NewReader(gz)))
	case FlagGzip:
		out, err = readAll(gzip.NewReader(bytes.NewReader(stored)))
	case FlagZstd:
		var zr *zstd.Decoder
		if zr, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxDecoded), zstd.WithDecoderConcurrency(1)); err == nil {
			out, err = zr.DecodeAll(stored, nil)
			zr.Close()
		}
	case FlagBrotli:
		out, err = readAll(brotli.NewReader(bytes.NewReader(stored)), nil)
	default:
		return nil, fmt.Errorf("unknown codec in KV flags %#x", flags)
	}
	if err != nil {
		return nil, fmt.Errorf("decompress (flags %#x): %w", flags, err)
	}
	return out, checksum.Verify(out, sum)
}

func readAll(r io.Reader, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(r, maxDecoded+1))
	if err == nil && len(out) > maxDecoded {
		err = fmt.Errorf("decompressed content exceeds %d bytes", maxDecoded)
	}
	return out, err
}

// manifest is the data of a chunked file: the stored (encoded) bytes cut
// into chunks, each named by the SHA-256 of its bytes.
type manifest struct {
	Version int      `json:"v"`
	Size    int      `json:"size"` // stored bytes in all
	Chunks  []string `json:"chunks"`
}

func parseManifest(b []byte) (manifest, error) {
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("chunk manifest: %w", err)
	}
	if m.Version != 1 {
		return m, fmt.Errorf("chunk manifest version %d: this kvx reads version 1", m.Version)
	}
	for _, c := range m.Chunks {
		if !checksum.Valid(c) {
			return m, fmt.Errorf("chunk manifest: bad chunk name %q", c)
		}
	}
	return m, nil
}
