package server

import (
	"github.com/kvxproject/kvx/pkg/server/state"
)

// Session and event commands carry their request as JSON after the type
// byte, as the catalog's (see catalog_command.go).

// The session operations.
const (
	sessionCreate  = "create"
	sessionDestroy = "destroy"
)

// sessionCommand creates or destroys a session. The leader picks the ID of
// a new session before the command is logged, so every node applies the same.
type sessionCommand struct {
	Op      string
	Session *state.Session `json:",omitempty"` // create
	ID      string         `json:",omitempty"` // destroy
}

func encodeSession(c *sessionCommand) ([]byte, error) { return encodeCatalog(cmdSession, c) }

func encodeEvent(e *state.Event) ([]byte, error) { return encodeCatalog(cmdEvent, e) }

// applySession applies a session command in a transaction of its own. It
// returns the refusal of a create, or nil.
func (f *fsm) applySession(c *sessionCommand, index uint64) any {
	w := f.store.Write()
	w.At(index)
	switch c.Op {
	case sessionCreate:
		if c.Session == nil {
			w.Abort()
			return errBadCommand
		}
		if err := w.SessionCreate(c.Session); err != nil {
			w.Abort()
			return err
		}
	case sessionDestroy:
		w.SessionDestroy(c.ID)
	default:
		w.Abort()
		return errBadCommand
	}
	w.Commit()
	return nil
}

// applyEvent appends a fired event; it returns the event as kept.
func (f *fsm) applyEvent(e *state.Event, index uint64) any {
	w := f.store.Write()
	w.At(index)
	kept := w.FireEvent(e)
	w.Commit()
	return kept
}
