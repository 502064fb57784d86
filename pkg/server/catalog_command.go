package server

import (
	"encoding/json"
	"fmt"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// Catalog commands carry their request as JSON after the type byte: they are
// far rarer than KV writes (an agent writes only when something changed), and
// their shape grows with Consul's.

func encodeRegister(r *state.Registration) ([]byte, error) {
	return encodeCatalog(cmdRegister, r)
}

func encodeDeregister(d *state.Deregistration) ([]byte, error) {
	return encodeCatalog(cmdDeregister, d)
}

func encodeCatalog(typ cmdType, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode catalog command: %w", err)
	}
	return append([]byte{byte(typ)}, b...), nil
}

func decodeCatalog(c *command, b []byte) error {
	var err error
	switch c.typ {
	case cmdRegister:
		c.reg = new(state.Registration)
		err = json.Unmarshal(b, c.reg)
	case cmdDeregister:
		c.dereg = new(state.Deregistration)
		err = json.Unmarshal(b, c.dereg)
	case cmdSession:
		c.sess = new(sessionCommand)
		err = json.Unmarshal(b, c.sess)
	case cmdEvent:
		c.event = new(state.Event)
		err = json.Unmarshal(b, c.event)
	case cmdACL:
		c.acl = new(aclCommand)
		err = json.Unmarshal(b, c.acl)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errBadCommand, err)
	}
	return nil
}

// applyCatalog applies a catalog command in a transaction of its own, so that
// a refused one changes nothing. It returns the refusal, or nil.
func (f *fsm) applyCatalog(c *command, index uint64) any {
	w := f.store.Write()
	w.At(index)
	var err error
	if c.typ == cmdRegister {
		err = w.Register(c.reg)
	} else {
		err = w.Deregister(c.dereg)
	}
	if err != nil {
		w.Abort()
		return err
	}
	w.Commit()
	return nil
}
