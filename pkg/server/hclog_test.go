package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestHCLogAdapterRendersValues(t *testing.T) {
	var buf strings.Builder
	var policy logPolicy
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &policy)
	srv := raft.Server{Suffrage: raft.Voter, ID: "n2", Address: "127.0.0.1:8302"}
	l.Named("wal").With("segment", 3).Info("opened", "peer", srv, "addr", raft.ServerAddress("127.0.0.1:8301"),
		"error", errors.New("boom"), "took", hclog.Fmt("%d ms", 12), "n", 7, "odd")
	l.Trace("hidden at debug")
	l.Debug("shown at debug")
	got := buf.String()
	for _, want := range []string{
		`level=INFO msg=opened component=raft.wal segment=3 peer="{Suffrage:Voter ID:n2 Address:127.0.0.1:8302}" addr=127.0.0.1:8301 error=boom took="12 ms" n=7 EXTRA_VALUE_AT_END=odd`,
		`level=DEBUG msg="shown at debug" component=raft`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q does not contain %q", got, want)
		}
	}
	if strings.Contains(got, "map[") || strings.Contains(got, "hidden") {
		t.Errorf("log %q has a map or a trace line", got)
	}
	if !l.IsDebug() || l.IsTrace() {
		t.Errorf("IsDebug %v IsTrace %v; want the handler's level", l.IsDebug(), l.IsTrace())
	}
}

func TestLogPolicyLevels(t *testing.T) {
	var p logPolicy
	peer := raft.Server{Suffrage: raft.Voter, ID: "n2", Address: "127.0.0.1:8302"}
	closed := fmt.Errorf("read tcp: %w", net.ErrClosed)
	reset := fmt.Errorf("read tcp: %w", syscall.ECONNRESET)
	type step struct {
		level slog.Level
		msg   string
		args  []any
		want  slog.Level
	}
	check := func(when string, steps ...step) {
		t.Helper()
		for _, s := range steps {
			if got := p.level(s.level, s.msg, s.args); got != s.want {
				t.Errorf("%s: %s %q %v = %s, want %s", when, s.level, s.msg, s.args, got, s.want)
			}
		}
	}
	election := func(lastLeader string, want slog.Level) step {
		return step{slog.LevelWarn, "heartbeat timeout reached, starting election", []any{"last-leader-addr", lastLeader, "last-leader-id", ""}, want}
	}
	heartbeat := func(want slog.Level) step {
		return step{slog.LevelError, "failed to heartbeat to", []any{"peer", peer.Address, "error", errors.New("refused")}, want}
	}
	vote := func(want slog.Level) step {
		return step{slog.LevelError, "failed to make requestVote RPC", []any{"target", peer, "error", errors.New("refused")}, want}
	}
	check("no goodbye",
		election("", slog.LevelInfo), // the first election of a node
		election("127.0.0.1:8302", slog.LevelWarn),
		heartbeat(slog.LevelError), vote(slog.LevelError),
		step{slog.LevelError, "failed to decode incoming command", []any{"error", closed}, slog.LevelDebug},
		step{slog.LevelError, "failed to decode incoming command", []any{"error", raft.ErrTransportShutdown}, slog.LevelDebug},
		step{slog.LevelError, "failed to decode incoming command", []any{"error", reset}, slog.LevelWarn},
		step{slog.LevelError, "failed to decode incoming command", []any{"error", errors.New("bad")}, slog.LevelError},
	)
	p.peerLeft("n2", "127.0.0.1:8302")
	check("after its goodbye", election("127.0.0.1:8302", slog.LevelInfo), heartbeat(slog.LevelWarn), vote(slog.LevelWarn))
	p.dialed("127.0.0.1:8302", nil) // still up, handing over leadership
	check("reached before it stopped", heartbeat(slog.LevelWarn))
	p.dialed("127.0.0.1:8302", errors.New("refused"))
	check("stopped", heartbeat(slog.LevelWarn))
	p.dialed("127.0.0.1:8302", nil) // restarted
	check("restarted", heartbeat(slog.LevelError), vote(slog.LevelError))
	p.stopping.Store(true)
	check("while this node stops",
		step{slog.LevelError, "peer has newer term, stopping replication", []any{"peer", peer}, slog.LevelInfo},
		step{slog.LevelError, "failed to decode incoming command", []any{"error", closed}, slog.LevelDebug},
		step{slog.LevelError, "failed to appendEntries to", []any{"peer", peer, "error", errors.New("refused")}, slog.LevelWarn},
	)
}
