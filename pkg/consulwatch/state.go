package consulwatch

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/kvxproject/kvx/pkg/atomicfile"
)

// maxEventIDs is how many handled event IDs the state keeps: twice the
// events a server keeps, so every event it can still list is remembered.
const maxEventIDs = 512

// state is what the state file keeps.
type state struct {
	Watch  string   // the watch's params, see watchID
	Hash   string   // SHA-256 of the last successfully handled result
	Index  uint64   // its index
	Events []string `json:",omitempty"` // IDs of the handled events, oldest first
	path   string
}

func loadState(path, id string) (*state, error) {
	st := &state{Watch: id, path: path}
	if path == "" {
		return st, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("watch state: %w", err)
	}
	var got state
	if err := json.Unmarshal(b, &got); err != nil {
		return nil, fmt.Errorf("watch state %s: %w (remove it to start afresh)", path, err)
	}
	if got.Watch != id {
		return st, nil // another watch's state: start afresh
	}
	got.path = path
	return &got, nil
}

func (s *state) handledEvent(id string) bool { return slices.Contains(s.Events, id) }

func (s *state) addEvents(ids []string) {
	s.Events = append(s.Events, ids...)
	if n := len(s.Events) - maxEventIDs; n > 0 {
		s.Events = slices.Delete(s.Events, 0, n)
	}
}

func (s *state) save() error {
	if s.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	_, err = atomicfile.Write(s.path, append(b, '\n'), atomicfile.Options{Mode: 0o600})
	return err
}
