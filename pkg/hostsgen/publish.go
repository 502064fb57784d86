package hostsgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kvxproject/kvx/pkg/atomicfile"
)

// Publisher puts a generated file where it goes: a file (atomically, only
// when its entries changed) or a writer (stdout), with the shrink guard
// against the last published file: the output file itself, or in writer
// mode a state file that remembers the last file's entry count and digest.
type Publisher struct {
	Output    string    // the file; "" writes to Writer
	Writer    io.Writer // when Output is ""
	State     string    // with Writer: the state file ("" : no guard)
	MaxShrink float64   // 0 to 1
	Force     bool      // publish even what the guard refuses
	Mode      fs.FileMode
}

// Published says what Publish did.
type Published struct {
	Changed bool // the entries differ from the last published file's
	Last    int  // entries of the last published file (-1: none known)
}

// state is the state file of writer mode.
type state struct {
	Entries int    `json:"entries"`
	SHA256  string `json:"sha256"` // of the body (comments left out)
}

func digest(data []byte) string {
	sum := sha256.Sum256(Body(data))
	return hex.EncodeToString(sum[:])
}

// Publish publishes res unless the guard refuses it (a *ShrinkError).
func (p *Publisher) Publish(res Result) (Published, error) {
	if p.Output != "" {
		return p.toFile(res)
	}
	return p.toWriter(res)
}

func (p *Publisher) toFile(res Result) (Published, error) {
	old, err := os.ReadFile(p.Output)
	pub := Published{Last: -1}
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return pub, fmt.Errorf("read the last published file: %w", err)
	default:
		pub.Last = CountEntries(old)
		if bytes.Equal(Body(old), Body(res.Data)) {
			return pub, nil
		}
	}
	if !p.Force {
		if err := Shrink(pub.Last, res.Entries, p.MaxShrink); err != nil {
			return pub, err
		}
	}
	if _, err := atomicfile.Write(p.Output, res.Data, atomicfile.Options{Mode: p.Mode}); err != nil {
		return pub, fmt.Errorf("write %s: %w", p.Output, err)
	}
	pub.Changed = true
	return pub, nil
}

func (p *Publisher) toWriter(res Result) (Published, error) {
	pub := Published{Last: -1}
	sum := digest(res.Data)
	var last state
	if p.State != "" {
		b, err := os.ReadFile(p.State)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return pub, fmt.Errorf("read state %s: %w", p.State, err)
		default:
			if err := json.Unmarshal(b, &last); err != nil {
				return pub, fmt.Errorf("state %s: %w (remove it to start over)", p.State, err)
			}
			pub.Last = last.Entries
		}
	}
	pub.Changed = last.SHA256 != sum
	if pub.Changed && !p.Force {
		if err := Shrink(pub.Last, res.Entries, p.MaxShrink); err != nil {
			return pub, err
		}
	}
	if _, err := p.Writer.Write(res.Data); err != nil {
		return pub, fmt.Errorf("write: %w", err)
	}
	if p.State != "" && pub.Changed {
		b, _ := json.Marshal(state{Entries: res.Entries, SHA256: sum})
		if err := os.MkdirAll(filepath.Dir(p.State), 0o755); err != nil {
			return pub, fmt.Errorf("state: %w", err)
		}
		if _, err := atomicfile.Write(p.State, append(b, '\n'), atomicfile.Options{Mode: 0o644}); err != nil {
			return pub, fmt.Errorf("state: %w", err)
		}
	}
	return pub, nil
}
