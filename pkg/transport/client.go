package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/metrics"
)

// KV is the part of Consul's KV API the protocol uses; *api.KV satisfies it.
type KV interface {
	Get(key string, q *consulapi.QueryOptions) (*consulapi.KVPair, *consulapi.QueryMeta, error)
	Keys(prefix, separator string, q *consulapi.QueryOptions) ([]string, *consulapi.QueryMeta, error)
	Put(p *consulapi.KVPair, q *consulapi.WriteOptions) (*consulapi.WriteMeta, error)
	Delete(key string, w *consulapi.WriteOptions) (*consulapi.WriteMeta, error)
	Txn(txn consulapi.KVTxnOps, q *consulapi.QueryOptions) (bool, *consulapi.KVTxnResponse, *consulapi.QueryMeta, error)
}

// Client speaks the protocol for one prefix.
type Client struct {
	KV      KV
	Prefix  string           // default DefaultPrefix
	Node    string           // this node's name: acks, freezes, the host tag
	Metrics metrics.Sink     // default metrics.Discard
	Logger  *slog.Logger     // default: discard
	Now     func() time.Time // default time.Now

	files  sync.Map // target path -> fileState: files this client wrote or hashed
	failed sync.Map // target path -> checksum whose command failed
}

func (c *Client) prefix() string {
	if c.Prefix == "" {
		return DefaultPrefix
	}
	return c.Prefix
}

func (c *Client) layout(key string) (Layout, error) { return NewLayout(c.prefix(), key) }

func (c *Client) sink() metrics.Sink {
	if c.Metrics == nil {
		return metrics.Discard
	}
	return c.Metrics
}

func (c *Client) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Client) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// Results, as acknowledgements, metrics tags and Delivery.Result name them.
const (
	ResultDelivered     = "delivered"      // the file was written
	ResultUnchanged     = "unchanged"      // the file already had the checksum
	ResultUploaded      = "uploaded"       // kvx in wrote a new version
	ResultRefused       = "refused"        // a verification refused (see Refusal.Code)
	ResultError         = "error"          // the server, the disk or the source failed
	ResultCommandFailed = "command_failed" // delivered, but -e failed
)

// ErrRefused is matched (errors.Is) by every refusal: a verification that
// failed on purpose, which kvx reports with exit code 3.
var ErrRefused = errors.New("refused")

// ErrConflict means another writer changed the key while a push ran.
var ErrConflict = errors.New("changed by another writer")

// Refusal codes.
const (
	RefusedStop     = "stop"     // the key's stop switch is on
	RefusedFrozen   = "frozen"   // this node froze this file
	RefusedMismatch = "mismatch" // content does not hash to the checksum
	RefusedMissing  = "missing"  // no data or no checksum
	RefusedTooShort = "too_short"
	RefusedTooLarge = "too_large"
	RefusedNotFile  = "not_regular" // the target is a device, FIFO, socket, directory or unfollowed link
)

// Refusal is a verification that failed on purpose; nothing was written.
type Refusal struct {
	Code string
	Msg  string
}

func (r *Refusal) Error() string        { return r.Msg }
func (r *Refusal) Is(target error) bool { return target == ErrRefused }

// fileRefusal turns atomicfile's refusal of a target that is not a regular
// file into a Refusal (exit 3); other errors pass through.
func fileRefusal(err error) error {
	var te *atomicfile.TypeError
	if !errors.As(err, &te) {
		return err
	}
	hint := ""
	if te.Link != "" {
		hint = "; --follow-symlinks writes to its target"
	}
	return refuse(RefusedNotFile, "%v: not written%s", te, hint)
}

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Size writes a byte count for people: "81.2 MB (81234567 bytes)", or
// "512 bytes" below a kilobyte.
func Size(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d bytes", n)
	}
	v, unit := float64(n), ""
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		if v < 1000 {
			break
		}
		v, unit = v/1000, u
	}
	return fmt.Sprintf("%.1f %s (%d bytes)", v, unit, n)
}
