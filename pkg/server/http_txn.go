package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/kvxproject/kvx/pkg/acl"
	"github.com/kvxproject/kvx/pkg/server/state"
)

// txnOpJSON is one element of a /v1/txn body.
type txnOpJSON struct {
	KV *struct {
		Verb    string
		Key     string
		Value   []byte
		Flags   uint64
		Index   uint64
		Session string
	}
	Node    json.RawMessage
	Service json.RawMessage
	Check   json.RawMessage
}

// parseTxn decodes and validates a /v1/txn body. Operations that cannot run
// (unknown verb, missing key) come back as OpErrors, which Consul answers
// with 409; a body that is not a transaction at all is an httpError.
func parseTxn(body []byte) ([]state.Op, []state.OpError, error) {
	var raw []txnOpJSON
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, nil, badRequest("Failed to parse body: " + err.Error())
	}
	if len(raw) > maxTxnOps {
		return nil, nil, &httpError{code: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("Transaction contains too many operations (%d > %d)", len(raw), maxTxnOps)}
	}
	ops := make([]state.Op, 0, len(raw))
	var bad []state.OpError
	for i, r := range raw {
		if r.KV == nil {
			what := "operation has no KV part"
			if r.Node != nil || r.Service != nil || r.Check != nil {
				what = "only KV operations are supported"
			}
			bad = append(bad, state.OpError{OpIndex: i, What: what})
			continue
		}
		kv := r.KV
		if len(kv.Value) > maxValueSize {
			return nil, nil, &httpError{code: http.StatusRequestEntityTooLarge,
				msg: fmt.Sprintf("Value for key %q is too large (%d > %d bytes)", kv.Key, len(kv.Value), maxValueSize)}
		}
		verb := state.Verb(kv.Verb)
		switch {
		case !verb.Known():
			bad = append(bad, state.OpError{OpIndex: i, What: "unknown KV operation: " + kv.Verb})
			continue
		case kv.Key == "" && verb != state.VerbGetTree && verb != state.VerbDeleteTree:
			bad = append(bad, state.OpError{OpIndex: i, What: "missing key name for " + kv.Verb})
			continue
		}
		ops = append(ops, state.Op{Verb: verb, Key: kv.Key, Value: kv.Value, Flags: kv.Flags, Index: kv.Index, Session: kv.Session})
	}
	return ops, bad, nil
}

func (s *Server) handleTxn(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut {
		return methodNotAllowed(r, "PUT")
	}
	q := r.URL.Query()
	o, err := s.parseQuery(q)
	if err != nil {
		return err
	}
	if s.mustForward(o) {
		s.forward(w, r)
		return nil
	}
	if r.ContentLength > maxTxnBody {
		return &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("Request body too large, max size: %d bytes", maxTxnBody)}
	}
	body, err := readBody(r, maxTxnBody)
	if err != nil {
		return badRequest("read body: " + err.Error())
	}
	if len(body) > maxTxnBody {
		return &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("Request body too large, max size: %d bytes", maxTxnBody)}
	}
	ops, bad, err := parseTxn(body)
	if err != nil {
		return err
	}
	az, err := s.authz(r)
	if err != nil {
		return err
	}
	for i := range ops { // one denied operation refuses the whole txn
		if !opAllowed(az, &ops[i]) {
			return errPermissionDenied
		}
	}
	writes := false
	for i := range ops {
		writes = writes || ops[i].Verb.Writes()
	}
	if len(bad) > 0 || !writes {
		// Read-only: answered from this node's state without Raft.
		var res state.TxnResult
		rt := s.store.Read()
		if len(bad) > 0 {
			res.Errors = bad
		} else {
			if !o.stale {
				if err := s.waitReady(r); err != nil {
					return err
				}
				rt = s.store.Read()
			}
			if o.consistent {
				if err := s.raft.VerifyLeader().Error(); err != nil {
					return err
				}
			}
			res = rt.Txn(ops)
		}
		filtered := filterTxnResult(az, &res)
		s.setMeta(w, 0, false)
		leader, _ := s.raft.LeaderWithID()
		b := appendTxnResult(nil, res)
		b = b[:len(b)-1] // reopen the object for the query meta
		b = append(b, `,"Index":`...)
		b = strconv.AppendUint(b, rt.Index(), 10)
		b = append(b, `,"LastContact":`...)
		b = strconv.AppendInt(b, s.lastContactMS(), 10)
		b = append(b, `,"KnownLeader":`...)
		b = strconv.AppendBool(b, leader != "")
		b = append(b, `,"ConsistencyLevel":"","NotModified":false,"Backend":0,"ResultsFilteredByACLs":`...)
		b = strconv.AppendBool(b, filtered)
		b = append(b, '}')
		writeRawJSON(w, txnStatus(res), b)
		return nil
	}
	if !s.IsLeader() { // a ?stale write: hand the body we read to the leader
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		s.forward(w, r)
		return nil
	}
	resp, err := s.apply(encodeTxn(ops))
	if err != nil {
		return err
	}
	res := resp.(state.TxnResult)
	filterTxnResult(az, &res)
	writeRawJSON(w, txnStatus(res), appendTxnResult(nil, res))
	return nil
}

func txnStatus(res state.TxnResult) int {
	if len(res.Errors) > 0 {
		return http.StatusConflict
	}
	return http.StatusOK
}

// appendTxnResult appends {"Results":...,"Errors":...}.
func appendTxnResult(b []byte, res state.TxnResult) []byte {
	b = append(b, `{"Results":`...)
	if len(res.Entries) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, e := range res.Entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"KV":`...)
			b = appendEntry(b, e)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"Errors":`...)
	if len(res.Errors) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, e := range res.Errors {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"OpIndex":`...)
			b = strconv.AppendInt(b, int64(e.OpIndex), 10)
			b = append(b, `,"What":`...)
			b = appendJSONString(b, e.What)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// filterTxnResult leaves out the entries (of get-tree) the token cannot read.
func filterTxnResult(az *acl.Authorizer, res *state.TxnResult) bool {
	var filtered bool
	res.Entries, filtered = filterEntries(az, res.Entries)
	return filtered
}
