package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/kvxproject/kvx/pkg/acl"
	"github.com/kvxproject/kvx/pkg/server/state"
)

// Following a key in one exchange (kvx out --watch against a kvx server).
//
// A KV GET may carry two kvx headers, which Consul ignores (a kvx client
// falls back to its Consul path when the answer does not carry them back):
//
//	X-Kvx-Read: ["key", ...]
//	    read these keys too, from the state the answer was read from; the
//	    answer carries them in X-Kvx-Read as a JSON array of DirEntry
//	    objects (null for a missing key), so a node gets the data (the
//	    shared body) and its own keys (checksum, stop switch, its freeze
//	    and acknowledgement) in the same exchange.
//	X-Kvx-Ack: <URL-escaped key> <base64 value>
//	    set this key (the node's acknowledgement of its last delivery). The
//	    write is checked against the token as a PUT would be, then batched
//	    with the other nodes' into one Raft entry (kv_acks.go). The answer
//	    says X-Kvx-Ack: accepted, or X-Kvx-Ack-Error with the reason.
//
// An answer to X-Kvx-Read also carries X-Kvx-Index-Age: how long ago this
// server applied the answer's index (e.g. "1520us"), when it is a recent
// one. The nodes woken by one push learn the push's moment from it and
// time their next queries from it, so those arrive together.
//
// A node acknowledges on its next blocking query, so a delivery costs the
// server one exchange instead of three (wake, read transaction, PUT).
const (
	headerRead     = "X-Kvx-Read"
	headerAck      = "X-Kvx-Ack"
	headerAckError = "X-Kvx-Ack-Error"
	headerIndexAge = "X-Kvx-Index-Age"

	maxReadKeys  = 16
	maxReadBytes = 64 << 10 // of values in an X-Kvx-Read answer; beyond, the header is left out
	maxAckValue  = 64 << 10
)

// takeAck queues the acknowledgement a request carries, if any, and says
// in the answer's headers whether it was taken.
func (s *Server) takeAck(w http.ResponseWriter, r *http.Request) {
	v := r.Header.Get(headerAck)
	if v == "" {
		return
	}
	key, value, err := parseAckHeader(v)
	if err == nil {
		var az *acl.Authorizer
		if az, err = s.authz(r); err == nil && !az.KeyWrite(key) {
			err = fmt.Errorf("permission denied: the token may not write %s", key)
		}
	}
	if err == nil {
		err = s.acks.add(key, value)
	}
	if err != nil {
		w.Header()[headerAckError] = []string{headerSafe(err.Error())}
		return
	}
	w.Header()[headerAck] = []string{"accepted"}
}

func parseAckHeader(v string) (key string, value []byte, err error) {
	k, b64, ok := strings.Cut(v, " ")
	if !ok {
		return "", nil, fmt.Errorf("%s: want \"<escaped key> <base64 value>\"", headerAck)
	}
	if key, err = url.PathUnescape(k); err != nil {
		return "", nil, fmt.Errorf("%s: key: %v", headerAck, err)
	}
	if key == "" {
		return "", nil, fmt.Errorf("%s: empty key", headerAck)
	}
	if err := checkKey(key); err != nil {
		return "", nil, fmt.Errorf("%s: %v", headerAck, err)
	}
	if value, err = base64.StdEncoding.DecodeString(b64); err != nil {
		return "", nil, fmt.Errorf("%s: value: %v", headerAck, err)
	}
	if len(value) > maxAckValue {
		return "", nil, fmt.Errorf("%s: value of %d bytes, over %d", headerAck, len(value), maxAckValue)
	}
	return key, value, nil
}

// readKeys parses a request's X-Kvx-Read (nil without one).
func readKeys(r *http.Request) ([]string, error) {
	v := r.Header.Get(headerRead)
	if v == "" {
		return nil, nil
	}
	keys, ok := plainStrings(v)
	if !ok {
		if err := json.Unmarshal([]byte(v), &keys); err != nil {
			return nil, badRequest(headerRead + ": want a JSON array of keys: " + err.Error())
		}
	}
	if len(keys) > maxReadKeys {
		return nil, badRequest(fmt.Sprintf("%s: %d keys, at most %d", headerRead, len(keys), maxReadKeys))
	}
	for _, k := range keys {
		if k == "" {
			return nil, badRequest(headerRead + ": empty key")
		}
		if err := checkKey(k); err != nil {
			return nil, badRequest(headerRead + ": " + err.Error())
		}
	}
	return keys, nil
}

// plainStrings parses a JSON array of strings that need no unescaping
// (what kvx out sends: keys without quotes, backslashes or control
// characters) without encoding/json; ok is false for anything else, which
// the caller hands to encoding/json.
func plainStrings(v string) (out []string, ok bool) {
	v = jsonTrim(v)
	if len(v) < 2 || v[0] != '[' || v[len(v)-1] != ']' {
		return nil, false
	}
	rest := jsonTrim(v[1 : len(v)-1])
	out = make([]string, 0, 4)
	for rest != "" {
		if rest[0] != '"' {
			return nil, false
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil, false
		}
		str := rest[1 : 1+end]
		for i := 0; i < len(str); i++ {
			if c := str[i]; c == '\\' || c < ' ' || c >= 0x80 {
				return nil, false // escapes, control or non-ASCII bytes: encoding/json decides
			}
		}
		out = append(out, str)
		rest = jsonTrim(rest[2+end:])
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil, false
		}
		if rest = jsonTrim(rest[1:]); rest == "" {
			return nil, false // a trailing comma
		}
	}
	return out, true
}

// jsonTrim trims JSON's whitespace (space, tab, CR, LF: not the others
// strings.TrimSpace takes).
func jsonTrim(s string) string { return strings.Trim(s, " \t\r\n") }

// writeReads puts the keys asked in X-Kvx-Read, read from rt, in the
// answer's headers. A key the token may not read refuses the request, as
// the read transaction it replaces would.
func writeReads(w http.ResponseWriter, az *acl.Authorizer, rt *state.ReadTxn, keys []string) error {
	b := make([]byte, 0, 256*len(keys))
	b = append(b, '[')
	size := 0
	for i, k := range keys {
		if !az.KeyRead(k) {
			return errPermissionDenied
		}
		if i > 0 {
			b = append(b, ',')
		}
		e := rt.KVEntry(k)
		if e == nil {
			b = append(b, "null"...)
			continue
		}
		if size += len(e.Value); size > maxReadBytes {
			return nil // too big for a header: the client reads them itself
		}
		b = appendEntry(b, e)
	}
	w.Header()[headerRead] = []string{string(append(b, ']'))}
	return nil
}

// headerSafe keeps a message on one header line.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
