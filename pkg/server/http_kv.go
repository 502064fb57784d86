package server

import (
	"compress/gzip"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/kvxproject/kvx/pkg/acl"
	"github.com/kvxproject/kvx/pkg/server/state"
)

func (s *Server) handleKV(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet:
		return s.kvGet(w, r)
	case http.MethodPut, http.MethodDelete:
		if !s.IsLeader() { // the leader validates and applies; the body is not read here
			s.forward(w, r)
			return nil
		}
		if r.Method == http.MethodPut {
			return s.kvPut(w, r)
		}
		return s.kvDelete(w, r)
	}
	return methodNotAllowed(r, "GET, PUT, DELETE")
}

func (s *Server) kvGet(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	o, err := s.parseQuery(q)
	if err != nil {
		return err
	}
	key := kvKey(r)
	if s.mustForward(o) {
		s.forward(w, r)
		return nil
	}
	var (
		keys    []string
		entries []*state.Entry
		query   func(ws memdb.WatchSet, rt *state.ReadTxn) uint64
		shape   = "get\x00" // what the answer is, for the answer cache
	)
	switch {
	case has(q, "keys"):
		sep := q.Get("separator")
		if sep == "" {
			sep = q.Get("seperator") // Consul still accepts its old spelling
		}
		shape = "keys\x00" + sep + "\x00"
		query = func(ws memdb.WatchSet, rt *state.ReadTxn) (idx uint64) {
			idx, keys = rt.KVKeys(ws, key, sep)
			return idx
		}
	case has(q, "recurse"):
		shape = "recurse\x00"
		query = func(ws memdb.WatchSet, rt *state.ReadTxn) (idx uint64) {
			idx, entries = rt.KVList(ws, key)
			return idx
		}
	default:
		query = func(ws memdb.WatchSet, rt *state.ReadTxn) uint64 {
			idx, e := rt.KVGet(ws, key)
			entries = entries[:0]
			if e != nil {
				entries = append(entries, e)
			}
			return idx
		}
	}
	reads, err := readKeys(r)
	if err != nil {
		return err
	}
	s.takeAck(w, r)
	var last *state.ReadTxn // the state the answer was read from
	idx, err := s.blockingQuery(r, o, func(ws memdb.WatchSet, rt *state.ReadTxn) uint64 {
		last = rt
		return query(ws, rt)
	})
	if err != nil {
		return err
	}
	az, err := s.authz(r) // as resolved when the query last woke
	if err != nil {
		return err
	}
	if reads != nil {
		if err := writeReads(w, az, last, reads); err != nil {
			return err
		}
		if age, ok := s.applied.age(idx, time.Now()); ok {
			w.Header()[headerIndexAge] = []string{strconv.FormatInt(age.Microseconds(), 10) + "us"}
		}
	}
	filtered := false
	switch {
	case has(q, "keys"):
		keys, filtered = filterKeys(az, keys)
	case has(q, "recurse"):
		entries, filtered = filterEntries(az, entries)
	default:
		if !az.KeyRead(key) {
			return errPermissionDenied
		}
	}
	s.setMeta(w, idx, true)
	if filtered {
		setFiltered(w)
	}
	var build func() ([]byte, error)
	switch {
	case len(keys) > 0:
		build = func() ([]byte, error) {
			b := []byte{'['}
			for i, k := range keys {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
			}
			return append(b, ']'), nil
		}
	case len(entries) == 0:
		w.WriteHeader(http.StatusNotFound) // Consul 1.22 answers an empty ?keys with 404 too
		return nil
	case has(q, "raw") && !has(q, "recurse"):
		w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
		w.Header()["X-Content-Type-Options"] = []string{"nosniff"}
		if filtered || len(entries[0].Value) < gzipMinSize {
			writeBody(w, http.StatusOK, entries[0].Value)
			return nil
		}
		// A fleet following a file reads it raw: its watchers share one
		// gzip of it, as the JSON answers below are shared.
		v := entries[0].Value
		body, err := s.answers.body("/v1/kv\x00raw\x00"+key, idx, last.ReapIndex(), func() ([]byte, error) { return v, nil })
		if err != nil {
			return err
		}
		writeEncoded(w, http.StatusOK, body, gzip.DefaultCompression)
		return nil
	default:
		build = func() ([]byte, error) {
			return appendEntries(make([]byte, 0, entriesSize(entries)), entries), nil
		}
	}
	// The watchers of a key wake together and ask the same question at the
	// same index: the first encodes the answer, the others share its bytes.
	// A filtered answer is this token's alone: not shared.
	body, level := &encoded{}, gzip.BestSpeed
	if filtered {
		body.body, err = build()
	} else {
		body, err = s.answers.body("/v1/kv\x00"+shape+key, idx, last.ReapIndex(), build)
		level = gzip.DefaultCompression
	}
	if err != nil {
		return err
	}
	w.Header()["Content-Type"] = []string{"application/json"}
	writeEncoded(w, http.StatusOK, body, level)
	return nil
}

// conflicting refuses a request that combines two of cas, acquire and release.
func conflicting(q url.Values, names ...string) error {
	n := 0
	for _, name := range names {
		if has(q, name) {
			n++
		}
	}
	if n > 1 {
		return badRequest("Conflicting flags: " + q.Encode() + "\n")
	}
	return nil
}

func parseCAS(q url.Values) (uint64, error) {
	n, err := strconv.ParseUint(q.Get("cas"), 10, 64)
	if err != nil {
		return 0, badRequest(fmt.Sprintf("Invalid cas index %q", q.Get("cas")))
	}
	return n, nil
}

func tooLarge(n int64) error {
	return &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf(
		"Request body(%d bytes) too large, max size: %d bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.", n, maxValueSize)}
}

func (s *Server) kvPut(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := s.checkScope(q); err != nil {
		return err
	}
	key := kvKey(r)
	if key == "" {
		return badRequest("Missing key name")
	}
	if err := conflicting(q, "cas", "acquire", "release"); err != nil {
		return err
	}
	op := state.Op{Verb: state.VerbSet, Key: key}
	var err error
	if v := q.Get("flags"); v != "" {
		// Consul answers 500 with strconv's own text here; kvx matches it.
		if op.Flags, err = strconv.ParseUint(v, 10, 64); err != nil {
			return err
		}
	}
	if has(q, "cas") {
		if op.Index, err = parseCAS(q); err != nil {
			return err
		}
		op.Verb = state.VerbCAS
	}
	switch {
	case has(q, "acquire"):
		op.Verb, op.Session = state.VerbLock, q.Get("acquire")
	case has(q, "release"):
		op.Verb, op.Session = state.VerbUnlock, q.Get("release")
	}
	if r.ContentLength > maxValueSize {
		return tooLarge(r.ContentLength)
	}
	body, err := readBody(r, maxValueSize)
	if err != nil {
		return badRequest("read body: " + err.Error())
	}
	if len(body) > maxValueSize {
		return tooLarge(int64(len(body)))
	}
	op.Value = body
	if err := s.kvAllowed(r, &op); err != nil {
		return err
	}
	if op.Verb == state.VerbLock && time.Now().Before(s.store.LockDelay(key)) {
		// A lock delay holds the key: refused without a write, as Consul.
		writeRawJSON(w, http.StatusOK, []byte("false"))
		return nil
	}
	return s.kvWrite(w, &op)
}

func (s *Server) kvDelete(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := s.checkScope(q); err != nil {
		return err
	}
	key := kvKey(r)
	if err := conflicting(q, "recurse", "cas"); err != nil {
		return err
	}
	op := state.Op{Verb: state.VerbDelete, Key: key}
	var err error
	switch {
	case has(q, "recurse"):
		op.Verb = state.VerbDeleteTree
	case key == "":
		return badRequest("Missing key name")
	case has(q, "cas"):
		if op.Index, err = parseCAS(q); err != nil {
			return err
		}
		op.Verb = state.VerbDeleteCAS
	}
	if err := s.kvAllowed(r, &op); err != nil {
		return err
	}
	return s.kvWrite(w, &op)
}

func (s *Server) kvWrite(w http.ResponseWriter, op *state.Op) error {
	resp, err := s.apply(encodeKV(op))
	if err != nil {
		return err
	}
	kr := resp.(kvResponse)
	if kr.err != nil {
		return kr.err
	}
	if kr.ok {
		writeRawJSON(w, http.StatusOK, []byte("true"))
	} else {
		writeRawJSON(w, http.StatusOK, []byte("false"))
	}
	return nil
}

// kvAllowed checks a KV write against the request's token: write on the
// key, or on every key under it for a recursive delete.
func (s *Server) kvAllowed(r *http.Request, op *state.Op) error {
	az, err := s.authz(r)
	if err != nil {
		return err
	}
	if !opAllowed(az, op) {
		return errPermissionDenied
	}
	return nil
}

// opAllowed applies Consul's checks to one KV operation, of a write or of
// a txn.
func opAllowed(az *acl.Authorizer, op *state.Op) bool {
	switch op.Verb {
	case state.VerbDeleteTree:
		return az.KeyWritePrefix(op.Key)
	case state.VerbGetTree:
		return true // filtered, as a ?recurse read
	case state.VerbGet, state.VerbGetOrEmpty, state.VerbCheckIndex, state.VerbCheckSession, state.VerbCheckNotExists:
		return az.KeyRead(op.Key)
	}
	return az.KeyWrite(op.Key)
}

// filterKeys and filterEntries leave out what the token cannot read, and
// say whether they did; with nothing to leave out they copy nothing.
func filterKeys(az *acl.Authorizer, keys []string) ([]string, bool) {
	if az == allowAll {
		return keys, false
	}
	return filterBy(keys, az.KeyRead)
}

func filterEntries(az *acl.Authorizer, entries []*state.Entry) ([]*state.Entry, bool) {
	if az == allowAll {
		return entries, false
	}
	return filterBy(entries, func(e *state.Entry) bool { return az.KeyRead(e.Key) })
}

func filterBy[T any](in []T, keep func(T) bool) ([]T, bool) {
	for i, v := range in {
		if keep(v) {
			continue
		}
		out := append(make([]T, 0, len(in)-1), in[:i]...)
		for _, v := range in[i+1:] {
			if keep(v) {
				out = append(out, v)
			}
		}
		return out, true
	}
	return in, false
}
