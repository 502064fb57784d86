package render

import (
	"fmt"
	"sort"
	"sync"
)

// Scratch is a template's scratch pad, as consul-template's `scratch`: a
// map that lives for one render of one template. The setters return "" so
// that {{ scratch.Set "k" 1 }} writes nothing.
type Scratch struct {
	mu     sync.Mutex
	values map[string]any
}

// Key reports whether k is set.
func (s *Scratch) Key(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.values[k]
	return ok
}

// Get returns the value at k, nil when unset.
func (s *Scratch) Get(k string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[k]
}

// Set stores v at k, replacing what was there.
func (s *Scratch) Set(k string, v any) string {
	s.set(k, v, true)
	return ""
}

// SetX stores v at k unless k is already set.
func (s *Scratch) SetX(k string, v any) string {
	s.set(k, v, false)
	return ""
}

func (s *Scratch) set(k string, v any, replace bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]any{}
	}
	if _, ok := s.values[k]; replace || !ok {
		s.values[k] = v
	}
}

// MapSet stores v under mk in the map at k (made if unset); an error if k
// holds something else than a map.
func (s *Scratch) MapSet(k, mk string, v any) (string, error) { return s.mapSet(k, mk, v, true) }

// MapSetX is MapSet that leaves an existing mk alone.
func (s *Scratch) MapSetX(k, mk string, v any) (string, error) { return s.mapSet(k, mk, v, false) }

func (s *Scratch) mapSet(k, mk string, v any, replace bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]any{}
	}
	if _, ok := s.values[k]; !ok {
		s.values[k] = map[string]any{}
	}
	m, ok := s.values[k].(map[string]any)
	if !ok {
		return "", fmt.Errorf("scratch: %q is not a map", k)
	}
	if _, ok := m[mk]; replace || !ok {
		m[mk] = v
	}
	return "", nil
}

// MapValues lists the values of the map at k in key order; nil when k is
// unset or not a map.
func (s *Scratch) MapValues(k string) ([]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.values[k].(map[string]any)
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(m))
	for mk := range m {
		keys = append(keys, mk)
	}
	sort.Strings(keys)
	out := make([]any, len(keys))
	for i, mk := range keys {
		out[i] = m[mk]
	}
	return out, nil
}
