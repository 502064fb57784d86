package gitsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/goccy/go-yaml"
)

// ParseError is a file that cannot be read as its format, and where.
type ParseError struct {
	File         string
	Line, Column int // 1-based; 0 when unknown
	Msg          string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// position turns a byte offset of data into a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, max(col, 1)
}

// yamlError names file and the position goccy/go-yaml reports.
func yamlError(file string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		pe := &ParseError{File: file, Msg: ye.GetMessage()}
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			pe.Line, pe.Column = tk.Position.Line, tk.Position.Column
		}
		return pe
	}
	return &ParseError{File: file, Msg: err.Error()}
}

// parseYAML decodes data (one document) into plain Go values.
func parseYAML(file string, data []byte) (any, error) {
	var v any
	if err := yaml.UnmarshalWithOptions(data, &v); err != nil {
		return nil, yamlError(file, err)
	}
	return v, nil
}

// parseJSON decodes data keeping numbers as written; trailing data is an
// error.
func parseJSON(file string, data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	fail := func(off int64, msg string) error {
		line, col := position(data, off)
		return &ParseError{File: file, Line: line, Column: col, Msg: msg}
	}
	if err := dec.Decode(&v); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return nil, fail(se.Offset, se.Error())
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fail(int64(len(data)), "unexpected end of JSON input")
		}
		return nil, fail(dec.InputOffset(), err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(dec.InputOffset(), "data after the JSON value")
	}
	return v, nil
}

// formatOf is the expansion format of a file name: json, yaml,
// properties, or "" for a file stored as it is.
func formatOf(name string) string {
	switch {
	case strings.HasSuffix(name, ".json"):
		return "json"
	case strings.HasSuffix(name, ".yaml"), strings.HasSuffix(name, ".yml"):
		return "yaml"
	case strings.HasSuffix(name, ".properties"):
		return "properties"
	}
	return ""
}
