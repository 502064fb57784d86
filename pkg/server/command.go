package server

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// The FSM command format: one byte of command type, then the fields as
// uvarints and length-prefixed byte strings. It is compact and cheap to
// decode, which matters at tens of thousands of writes a second.
//
//	kv   : type | op
//	txn  : type | uvarint n | op * n
//	reap : type | uvarint index
//	register, deregister : type | JSON (see catalog_command.go)
//	session, event       : type | JSON (see session_command.go)
//	acl                  : type | JSON (see acl_command.go)
//	op   : verb byte | key | value | uvarint flags | uvarint index | session
type cmdType byte

const (
	cmdKV         cmdType = 1
	cmdTxn        cmdType = 2
	cmdReap       cmdType = 3
	cmdRegister   cmdType = 4
	cmdDeregister cmdType = 5
	cmdSession    cmdType = 6
	cmdEvent      cmdType = 7
	cmdACL        cmdType = 8
)

var verbCodes = []state.Verb{
	1: state.VerbSet, 2: state.VerbCAS, 3: state.VerbLock, 4: state.VerbUnlock,
	5: state.VerbGet, 6: state.VerbGetOrEmpty, 7: state.VerbGetTree, 8: state.VerbCheckIndex,
	9: state.VerbCheckSession, 10: state.VerbCheckNotExists, 11: state.VerbDelete,
	12: state.VerbDeleteTree, 13: state.VerbDeleteCAS,
}

func verbCode(v state.Verb) byte {
	for i, x := range verbCodes {
		if x == v && i > 0 {
			return byte(i)
		}
	}
	return 0
}

type command struct {
	typ   cmdType
	ops   []state.Op
	index uint64
	reg   *state.Registration
	dereg *state.Deregistration
	sess  *sessionCommand
	event *state.Event
	acl   *aclCommand
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendOp(b []byte, op *state.Op) []byte {
	b = append(b, verbCode(op.Verb))
	b = appendBytes(b, []byte(op.Key))
	b = appendBytes(b, op.Value)
	b = binary.AppendUvarint(b, op.Flags)
	b = binary.AppendUvarint(b, op.Index)
	return appendBytes(b, []byte(op.Session))
}

func encodeKV(op *state.Op) []byte {
	b := make([]byte, 0, 16+len(op.Key)+len(op.Value)+len(op.Session))
	return appendOp(append(b, byte(cmdKV)), op)
}

func encodeTxn(ops []state.Op) []byte {
	n := 8
	for i := range ops {
		n += 24 + len(ops[i].Key) + len(ops[i].Value) + len(ops[i].Session)
	}
	b := append(make([]byte, 0, n), byte(cmdTxn))
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for i := range ops {
		b = appendOp(b, &ops[i])
	}
	return b
}

func encodeReap(index uint64) []byte {
	return binary.AppendUvarint([]byte{byte(cmdReap)}, index)
}

var errBadCommand = errors.New("bad command")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadCommand
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errBadCommand
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	if n == 0 {
		return nil
	}
	return v
}

func (d *decoder) op() state.Op {
	if d.err != nil || len(d.b) == 0 {
		d.err = errBadCommand
		return state.Op{}
	}
	code := int(d.b[0])
	d.b = d.b[1:]
	if code == 0 || code >= len(verbCodes) {
		d.err = errBadCommand
		return state.Op{}
	}
	op := state.Op{Verb: verbCodes[code]}
	op.Key = string(d.bytes())
	op.Value = d.bytes()
	op.Flags = d.uvarint()
	op.Index = d.uvarint()
	op.Session = string(d.bytes())
	return op
}

// decodeCommand decodes a Raft log entry. The value bytes alias data, which
// Raft does not reuse.
func decodeCommand(data []byte) (command, error) {
	if len(data) == 0 {
		return command{}, errBadCommand
	}
	d := &decoder{b: data[1:]}
	c := command{typ: cmdType(data[0])}
	switch c.typ {
	case cmdKV:
		c.ops = []state.Op{d.op()}
	case cmdTxn:
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			return command{}, errBadCommand
		}
		c.ops = make([]state.Op, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			c.ops = append(c.ops, d.op())
		}
	case cmdReap:
		c.index = d.uvarint()
	case cmdRegister, cmdDeregister, cmdSession, cmdEvent, cmdACL:
		if err := decodeCatalog(&c, d.b); err != nil {
			return command{}, err
		}
		d.b = nil
	default:
		return command{}, fmt.Errorf("%w: type %d", errBadCommand, c.typ)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errBadCommand
	}
	return c, d.err
}
