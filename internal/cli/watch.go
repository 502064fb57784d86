package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/consulwatch"
)

type watchOptions struct {
	httpAddr, token, datacenter string
	tls                         tlsClientFlags
	typ, key, prefix, service   string
	tags                        []string
	passing, stale, shell       bool
	checkState, name            string
	stateFile                   string
	once                        bool
	handlerTimeout              time.Duration
	logLevel                    string
	logJSON                     bool
}

func newWatchCmd() *cobra.Command {
	o := &watchOptions{}
	cmd := &cobra.Command{
		Use:   "watch -type TYPE [flags] [HANDLER...]",
		Short: "Run a handler when a key, prefix, service, node list, checks or event changes, as consul watch",
		Long: `Watch one of Consul's views with blocking queries (consul watch's types:
key, keyprefix, services, nodes, service, checks, event) and run HANDLER
(with $SHELL -c) at start and whenever both the index and the result
change, with the result's JSON on its stdin and CONSUL_INDEX in its
environment. Without HANDLER, print the current result and exit.

Beyond consul watch: -state-file keeps the last successfully handled result
(for events, the handled event IDs), so a restarted watch does not run the
handler again for what it already handled; a failing handler is retried
with backoff until it succeeds or a newer result supersedes it; -once
handles one result and exits with the handler's status; -handler-timeout.`,
		Annotations: map[string]string{trailingCommand: "true"},
		RunE:        func(cmd *cobra.Command, args []string) error { return runWatch(cmd, o, args) },
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	o.tls.register(f)
	f.StringVar(&o.httpAddr, "http-addr", "", "server HTTP address (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500)")
	f.StringVar(&o.token, "token", "", "ACL token (default: CONSUL_HTTP_TOKEN)")
	f.StringVar(&o.datacenter, "datacenter", "", "datacenter to talk to (default: the server's)")
	f.StringVar(&o.typ, "type", "", "what to watch: "+strings.Join(consulwatch.Types, ", ")+" (required)")
	f.StringVar(&o.key, "key", "", "the key (type key)")
	f.StringVar(&o.prefix, "prefix", "", "the key prefix (type keyprefix)")
	f.StringVar(&o.service, "service", "", "the service (types service and checks)")
	f.StringSliceVar(&o.tags, "tag", nil, "only instances with this tag (type service; repeatable)")
	f.BoolVar(&o.passing, "passing", false, "only passing instances (type service)")
	f.StringVar(&o.checkState, "state", "", "only checks in this state: passing, warning, critical or any (type checks)")
	f.StringVar(&o.name, "name", "", "the event name (type event)")
	f.BoolVar(&o.stale, "stale", false, "let any server answer, possibly stale (not for type event)")
	f.BoolVar(&o.shell, "shell", true, "run the handler's words, joined by spaces, with $SHELL -c; -shell=false runs them as they are")
	f.StringVar(&o.stateFile, "state-file", "", "file that keeps the last handled result, so a restart does not handle it again")
	f.BoolVar(&o.once, "once", false, "handle one result (unless -state-file says it was handled) and exit with the handler's status")
	f.DurationVar(&o.handlerTimeout, "handler-timeout", 0, "stop a handler (SIGTERM, SIGKILL 5s later) that runs longer than this, and count it failed; 0: no limit")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&o.logJSON, "log-json", false, "log JSON lines instead of text")
	return cmd
}

// watchParams builds consul watch's parameters from the flags, refusing
// a flag the type does not take.
func watchParams(cmd *cobra.Command, o *watchOptions) (map[string]any, error) {
	if o.typ == "" {
		return nil, errors.New("-type is required: " + strings.Join(consulwatch.Types, ", "))
	}
	if !slices.Contains(consulwatch.Types, o.typ) {
		return nil, fmt.Errorf("-type %q: want one of %s", o.typ, strings.Join(consulwatch.Types, ", "))
	}
	p := map[string]any{"type": o.typ}
	set := func(flag, param string, v any) {
		if cmd.Flags().Changed(flag) {
			p[param] = v
		}
	}
	set("key", "key", o.key)
	set("prefix", "prefix", o.prefix)
	set("service", "service", o.service)
	set("tag", "tag", o.tags)
	set("passing", "passing", o.passing)
	set("state", "state", o.checkState)
	set("name", "name", o.name)
	set("stale", "stale", o.stale)
	if err := consulwatch.Validate(p); err != nil {
		return nil, fmt.Errorf("-type %s: %w", o.typ, err)
	}
	return p, nil
}

func runWatch(cmd *cobra.Command, o *watchOptions, args []string) error {
	params, err := watchParams(cmd, o)
	if err != nil {
		return usageError{err}
	}
	if o.handlerTimeout < 0 {
		return usageError{fmt.Errorf("-handler-timeout %s: must not be negative", o.handlerTimeout)}
	}
	if o.stateFile != "" {
		abs, err := filepath.Abs(o.stateFile)
		if err != nil {
			return usageError{fmt.Errorf("-state-file %s: %w", o.stateFile, err)}
		}
		o.stateFile = abs
	}
	logger, err := newLogger(cmd.ErrOrStderr(), o.logLevel, o.logJSON)
	if err != nil {
		return err
	}
	c, err := client.New(client.Options{Address: o.httpAddr, Token: o.token, Datacenter: o.datacenter, TLS: o.tls.options()})
	if err != nil {
		return err
	}
	cfg := consulwatch.Config{Params: params, StateFile: o.stateFile, Once: o.once,
		HandlerTimeout: o.handlerTimeout, Logger: logger}
	if len(args) == 0 {
		// As consul watch without a handler: print the result, and exit.
		cfg.Once = true
		cfg.Handler = &indented{w: cmd.OutOrStdout()}
	} else {
		cfg.Handler = &consulwatch.Script{Args: args, Shell: o.shell, Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
	}
	err = consulwatch.Run(cmd.Context(), c, cfg)
	if errors.Is(err, consulwatch.ErrHandler) {
		// -once: the handler's own exit status.
		fmt.Fprintf(cmd.ErrOrStderr(), "kvx watch: %v\n", err)
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return exitWith{ee.ExitCode()}
		}
		return exitWith{exitError}
	}
	return err
}

// indented prints a result as consul watch does, indented by four spaces.
type indented struct{ w io.Writer }

func (p *indented) Handle(_ context.Context, _ uint64, body []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "    "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := p.w.Write(buf.Bytes())
	return err
}
