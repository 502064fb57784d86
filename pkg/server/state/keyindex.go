package state

import (
	"fmt"
	"unsafe"
)

// keyIndex is the "id" index of the tables keyed by a string (KV entries,
// tombstones, table indexes), in place of memdb.StringFieldIndex, which
// every lookup paid for twice: it appends a NUL to the key (a new string)
// and copies that into a new []byte, and each insert reads the field by
// reflection. keyIndex reads the field with a type switch and indexes the
// key's own bytes, unterminated and uncopied.
//
// Without the terminator the tree orders keys the same way (byte by byte, a
// key before the keys it is a prefix of) and exact and prefix lookups find
// the same entries. The bytes are a string's, which nothing writes to:
// go-immutable-radix only slices the keys it is given, and a slice made by
// unsafe.Slice has no spare capacity for an append to write into.
type keyIndex struct{}

func keyOf(obj any) (string, error) {
	switch o := obj.(type) {
	case *Entry:
		return o.Key, nil
	case *Tombstone:
		return o.Key, nil
	case *tableIndex:
		return o.Name, nil
	}
	return "", fmt.Errorf("keyIndex: unexpected object %T", obj)
}

// keyBytes is s's bytes, shared with s. The empty key's bytes are not nil:
// memdb takes a nil value for no value at all and answers an exact lookup
// with the first entry of the table.
func keyBytes(s string) []byte {
	if s == "" {
		return emptyKey
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

var emptyKey = []byte{}

// FromObject indexes obj by its key; an empty key is not indexed, as
// StringFieldIndex does (an insert of it then fails: the index is the
// primary one).
func (keyIndex) FromObject(obj any) (bool, []byte, error) {
	k, err := keyOf(obj)
	if err != nil || k == "" {
		return false, nil, err
	}
	return true, keyBytes(k), nil
}

func (keyIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("keyIndex: want one argument, got %d", len(args))
	}
	k, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("keyIndex: argument must be a string: %#v", args[0])
	}
	return keyBytes(k), nil
}

func (x keyIndex) PrefixFromArgs(args ...any) ([]byte, error) { return x.FromArgs(args...) }
