package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sort"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger bridges hclog, which Raft and raft-wal log through, to slog.
// hclog writes JSON lines; each becomes one slog record with its fields.
func newHCLogger(logger *slog.Logger) hclog.Logger {
	level := hclog.Info
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       level,
		Output:      slogWriter{logger},
		JSONFormat:  true,
		DisableTime: true,
	})
}

type slogWriter struct{ logger *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			w.logger.Info(string(line))
			continue
		}
		level := slog.LevelInfo
		switch rec["@level"] {
		case "trace", "debug":
			level = slog.LevelDebug
		case "warn":
			level = slog.LevelWarn
		case "error":
			level = slog.LevelError
		}
		msg, _ := rec["@message"].(string)
		attrs := []any{"component", rec["@module"]}
		keys := make([]string, 0, len(rec))
		for k := range rec {
			if len(k) > 0 && k[0] != '@' {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			attrs = append(attrs, k, rec[k])
		}
		w.logger.Log(context.Background(), level, msg, attrs...)
	}
	return len(p), nil
}
