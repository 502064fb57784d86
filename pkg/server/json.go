package server

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/kvxproject/kvx/pkg/server/state"
)

// Hand-written encoders for the hot paths. They produce exactly what
// encoding/json produces for Consul's DirEntry, without reflection.

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping as encoding/json does
// (HTML-safe, invalid UTF-8 replaced by U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendEntry appends one DirEntry object.
func appendEntry(b []byte, e *state.Entry) []byte {
	b = append(b, `{"LockIndex":`...)
	b = strconv.AppendUint(b, e.LockIndex, 10)
	b = append(b, `,"Key":`...)
	b = appendJSONString(b, e.Key)
	b = append(b, `,"Flags":`...)
	b = strconv.AppendUint(b, e.Flags, 10)
	b = append(b, `,"Value":`...)
	if len(e.Value) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, e.Value)
		b = append(b, '"')
	}
	if e.Session != "" {
		b = append(b, `,"Session":`...)
		b = appendJSONString(b, e.Session)
	}
	b = append(b, `,"CreateIndex":`...)
	b = strconv.AppendUint(b, e.CreateIndex, 10)
	b = append(b, `,"ModifyIndex":`...)
	b = strconv.AppendUint(b, e.ModifyIndex, 10)
	return append(b, '}')
}

func entriesSize(entries []*state.Entry) int {
	n := 2
	for _, e := range entries {
		n += 120 + len(e.Key) + len(e.Value)*4/3 + len(e.Session)
	}
	return n
}

// appendEntries appends a JSON array of DirEntry objects.
func appendEntries(b []byte, entries []*state.Entry) []byte {
	b = append(b, '[')
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEntry(b, e)
	}
	return append(b, ']')
}
