package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// Version is one push of a key: which checksum, when, from which node.
type Version struct {
	Checksum string `json:"checksum"`
	Time     string `json:"time,omitempty"` // RFC 3339, UTC; "" when unknown (written by another tool)
	Node     string `json:"node,omitempty"`
}

// historyLen is how many versions <key>/updated remembers, the current one
// included.
const historyLen = 8

// record is the value of <key>/updated: the last push and the versions
// before it, newest first.
type record struct {
	Version
	Previous []Version `json:"previous,omitempty"`
}

// versions is the history newest first, the current version at 0.
func (r record) versions() []Version {
	return append([]Version{r.Version}, r.Previous...)
}

func parseRecord(v []byte) (record, bool) {
	var r record
	if json.Unmarshal(v, &r) != nil || r.Checksum == "" {
		return record{}, false
	}
	return r, true
}

// nextRecord is the value of <key>/updated for a push of sum replacing
// previous (the checksum KV held, "" for none). The versions recorded
// before are kept when they lead to previous; a version written by another
// tool in between is recorded without a time.
func (c *Client) nextRecord(ctx context.Context, l Layout, sum, previous string) ([]byte, error) {
	p, _, err := c.KV.Get(l.Updated(), (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", l.Updated(), err)
	}
	next := record{Version: Version{Checksum: sum, Time: c.now().UTC().Format(time.RFC3339), Node: c.Node}}
	if previous == "" {
		return json.Marshal(next) // a first version (or the key was deleted and pushed again)
	}
	var old []Version
	if p != nil {
		if r, ok := parseRecord(p.Value); ok {
			old = r.versions()
		}
	}
	if len(old) == 0 || old[0].Checksum != previous {
		old = append([]Version{{Checksum: previous}}, old...)
	}
	next.Previous = old[:min(len(old), historyLen-1)]
	return json.Marshal(next)
}

// behindSince says since when a node with acknowledgement a has lacked the
// current version (RFC 3339, "" when unknown), and how many pushes it
// missed (0 when unknown). versions is the history newest first, empty
// when it does not describe the current checksum; pushed is when the
// current version was pushed (possibly estimated, "" when unknown).
//
// A node whose version is in the history has been behind since the push
// that replaced it. Otherwise (no file, an error before it hashed the
// file, a version older than the history) it has been behind since the
// current push, or since it first said so if that is later: a node that
// joined after the push was not behind before it existed.
func behindSince(versions []Version, pushed string, a Ack) (string, int) {
	if a.Checksum != "" {
		for i := 1; i < len(versions); i++ {
			if versions[i].Checksum == a.Checksum && versions[i-1].Time != "" {
				return versions[i-1].Time, i
			}
		}
	}
	if pushed == "" {
		return "", 0
	}
	tp, err1 := time.Parse(time.RFC3339, pushed)
	ta, err2 := time.Parse(time.RFC3339, a.Time)
	if err1 == nil && err2 == nil && ta.After(tp) {
		return a.Time, 0
	}
	return pushed, 0
}
