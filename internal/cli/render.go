package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/atomicfile"
	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/metrics"
	"github.com/kvxproject/kvx/pkg/render"
)

// renderOptions are render's flags, spelled as consul-template's where it
// has them (-consul-addr, -consul-token, -template, -wait, -once, -dry,
// -exec, -max-stale), so a script that runs consul-template runs render
// unchanged.
type renderOptions struct {
	common
	consulAddr, consulToken  string
	templates, configs       []string
	once, dry                bool
	wait                     string
	onceTimeout, missingLog  time.Duration
	maxStale                 time.Duration
	maxConns                 int
	exec                     string
	execReload, execKill     string
	execKillTimeout          time.Duration
	killSignal, reloadSignal string
	errOnFailedLookup        bool
	leftDelim, rightDelim    string
	env                      render.EnvOptions
}

// newEnvCmd is envconsul mode as a command of its own: kvx env
// -env-prefix PREFIX -exec CMD is kvx render -env-prefix PREFIX -exec CMD.
func newEnvCmd() *cobra.Command {
	cmd := newRenderCmd()
	cmd.Use = "env"
	cmd.Short = "Run a command with the keys under a prefix as its environment, as envconsul (render -env-prefix)"
	cmd.Long = `kvx env is render's envconsul mode: the keys under -env-prefix become the
-exec child's environment; when they change the child gets
-exec-reload-signal, or is restarted when none is set; when the child
exits, kvx env exits with its code.`
	return cmd
}

func newRenderCmd() *cobra.Command {
	o := &renderOptions{}
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Render consul-template templates from KV and the catalog, again on every change",
		Long: `render renders templates written in consul-template's language from the
server's KV and catalog into files, atomically, and renders them again when
the data they use changes; a command per template runs after a pass that
changed its file (each distinct command once per pass). A template is
written only once every piece of data it uses has been fetched; with -once
a missing key or service is an error after -once-timeout that lists it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRender(cmd, o) },
	}
	f := cmd.Flags()
	o.common.register(f, withDogstatsd)
	f.StringVar(&o.consulAddr, "consul-addr", "", "server address, as consul-template spells it (same as -http-addr)")
	f.StringVar(&o.consulToken, "consul-token", "", "ACL token, as consul-template spells it (same as -token)")
	f.StringArrayVar(&o.templates, "template", nil, "SOURCE:DESTINATION[:COMMAND] (repeatable)")
	f.StringArrayVar(&o.configs, "config", nil, "consul-template HCL configuration file (repeatable; later files add templates and override settings)")
	f.BoolVar(&o.once, "once", false, "render every template once, run the commands, and exit")
	f.BoolVar(&o.dry, "dry", false, "print the rendered templates to stdout instead of writing them (with -once: and the dependency list)")
	f.StringVar(&o.wait, "wait", "", "MIN[:MAX] quiescence after a change before rendering (e.g. 2s:10s)")
	f.DurationVar(&o.onceTimeout, "once-timeout", 10*time.Second, "with -once: fail when data is still missing after this")
	f.DurationVar(&o.missingLog, "missing-log", 30*time.Second, "log what a template still waits for this often")
	f.DurationVar(&o.maxStale, "max-stale", 2*time.Second, "read from any server unless its data lags more than this (then read consistently); 0: always consistent")
	f.IntVar(&o.maxConns, "max-connections", 32, "blocking queries (and connections) in flight at once")
	f.StringVar(&o.exec, "exec", "", "command to supervise: started after the first complete render, reloaded on change; render exits with its code")
	f.StringVar(&o.execReload, "exec-reload-signal", "", "signal sent to the -exec child when a file changed (default: restart it)")
	f.StringVar(&o.execKill, "exec-kill-signal", "SIGTERM", "signal that stops the -exec child")
	f.DurationVar(&o.execKillTimeout, "exec-kill-timeout", 30*time.Second, "SIGKILL the -exec child when it has not stopped after this")
	f.StringVar(&o.reloadSignal, "reload-signal", "SIGHUP", "signal that makes render re-read its configuration files and templates (\"\": none)")
	f.StringVar(&o.killSignal, "kill-signal", "SIGINT", "signal that stops render (SIGTERM always does)")
	f.BoolVar(&o.errOnFailedLookup, "err-on-failed-lookup", false, "a key() whose key does not exist is an error at once, in both modes (consul-template's err_on_failed_lookup)")
	f.StringVar(&o.leftDelim, "left-delim", "", "left template delimiter (default {{)")
	f.StringVar(&o.rightDelim, "right-delim", "", "right template delimiter (default }})")
	f.StringVar(&o.env.Prefix, "env-prefix", "", "envconsul mode: the keys under this prefix become the -exec child's environment")
	f.BoolVar(&o.env.Upcase, "env-upcase", false, "envconsul mode: upper-case the variable names")
	f.BoolVar(&o.env.Sanitize, "env-sanitize", false, "envconsul mode: replace characters other than [a-zA-Z0-9_] in names with _")
	f.BoolVar(&o.env.NoPrefix, "env-no-prefix", true, "envconsul mode: names without the prefix path (false: <prefix>_<key>)")
	return cmd
}

// renderSetup is everything runRender builds from flags and config files.
type renderSetup struct {
	targets []*render.Target
	opts    render.Options
	child   *render.Child
	addr    string
	token   string
	tls     client.TLS

	reloadSignal, killSignal syscall.Signal // render's own (0: none)
}

func (o *renderOptions) setup(cmd *cobra.Command) (*renderSetup, error) {
	s := &renderSetup{addr: o.httpAddr, token: o.token, tls: o.tls.options()}
	if o.consulAddr != "" {
		s.addr = o.consulAddr
	}
	if o.consulToken != "" {
		s.token = o.consulToken
	}
	var tcs []render.TemplateConfig
	ro := render.Options{Once: o.once, Dry: o.dry, OnceTimeout: o.onceTimeout, MissingLog: o.missingLog, Stdout: cmd.OutOrStdout(),
		ErrOnFailedLookup: o.errOnFailedLookup}
	killSig, reloadSig := o.killSignal, o.reloadSignal
	ro.Watch = render.WatchOptions{MaxConnections: o.maxConns, MaxStale: o.maxStale}
	exec := &render.ExecConfig{Command: o.exec, ReloadSignal: o.execReload, KillSignal: o.execKill, KillTimeout: o.execKillTimeout}
	for _, path := range o.configs {
		c, err := render.LoadConfig(path)
		if err != nil {
			return nil, usageError{fmt.Errorf("-config: %w", err)}
		}
		if c.KillSignal != "" && !cmd.Flags().Changed("kill-signal") {
			killSig = c.KillSignal
		}
		if c.ReloadSignal != "" && !cmd.Flags().Changed("reload-signal") {
			reloadSig = c.ReloadSignal
		}
		if c.ErrOnFailedLookup {
			ro.ErrOnFailedLookup = true
		}
		if c.ConsulAddr != "" && !cmd.Flags().Changed("consul-addr") && !cmd.Flags().Changed("http-addr") {
			s.addr = c.ConsulAddr
		}
		if c.ConsulToken != "" && !cmd.Flags().Changed("consul-token") && !cmd.Flags().Changed("token") {
			s.token = c.ConsulToken
		}
		if c.ConsulSSL != nil {
			s.applySSL(c.ConsulSSL)
		}
		if c.LogLevel != "" && !cmd.Flags().Changed("log-level") {
			o.logLevel = c.LogLevel
		}
		if c.MaxStale > 0 && !cmd.Flags().Changed("max-stale") {
			ro.Watch.MaxStale = c.MaxStale
		}
		if c.Wait != nil && !cmd.Flags().Changed("wait") {
			ro.Wait = *c.Wait
		}
		if c.OnceTimeout > 0 && !cmd.Flags().Changed("once-timeout") {
			ro.OnceTimeout = c.OnceTimeout
		}
		if c.MissingLog > 0 && !cmd.Flags().Changed("missing-log") {
			ro.MissingLog = c.MissingLog
		}
		if c.MaxConnections > 0 && !cmd.Flags().Changed("max-connections") {
			ro.Watch.MaxConnections = c.MaxConnections
		}
		if c.Exec != nil && !cmd.Flags().Changed("exec") {
			exec = c.Exec
		}
		tcs = append(tcs, c.Templates...)
	}
	for _, t := range o.templates {
		tc, err := render.ParseTemplateFlag(t)
		if err != nil {
			return nil, usageError{err}
		}
		tcs = append(tcs, tc)
	}
	switch {
	case o.env.Prefix != "" && len(tcs) > 0:
		return nil, usageError{errors.New("-env-prefix (envconsul mode) takes no templates")}
	case o.env.Prefix != "" && exec.Command == "":
		return nil, usageError{errors.New("-env-prefix needs -exec COMMAND: the child that gets the environment")}
	case o.env.Prefix == "" && len(tcs) == 0:
		return nil, usageError{errors.New("no templates: give -template SOURCE:DESTINATION or -config FILE")}
	}
	if o.wait != "" {
		w, err := render.ParseWait(o.wait)
		if err != nil {
			return nil, usageError{fmt.Errorf("-wait: %w", err)}
		}
		ro.Wait = w
	}
	for _, tc := range tcs {
		t, err := o.target(tc)
		if err != nil {
			return nil, err
		}
		s.targets = append(s.targets, t)
	}
	s.opts = ro
	var err error
	if s.killSignal, err = render.ParseSignal(killSig); err != nil {
		return nil, usageError{fmt.Errorf("kill signal: %w", err)}
	}
	if s.reloadSignal, err = render.ParseSignal(reloadSig); err != nil {
		return nil, usageError{fmt.Errorf("reload signal: %w", err)}
	}
	if exec.Command != "" {
		reload, err := render.ParseSignal(exec.ReloadSignal)
		if err != nil {
			return nil, usageError{fmt.Errorf("-exec-reload-signal: %w", err)}
		}
		kill, err := render.ParseSignal(exec.KillSignal)
		if err != nil {
			return nil, usageError{fmt.Errorf("-exec-kill-signal: %w", err)}
		}
		s.child = &render.Child{Command: exec.Command, ReloadSignal: reload, KillSignal: kill, KillTimeout: exec.KillTimeout,
			Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
	}
	return s, nil
}

// target reads one template's source and builds its Target; the
// destination's directory is created when the first render writes it.
func (o *renderOptions) target(tc render.TemplateConfig) (*render.Target, error) {
	text, name := tc.Contents, "(contents)"
	if tc.Source != "" {
		b, err := os.ReadFile(tc.Source)
		if err != nil {
			return nil, usageError{fmt.Errorf("template %s: %w", tc.Source, err)}
		}
		text, name = string(b), tc.Source
	}
	left, right := tc.LeftDelim, tc.RightDelim
	if left == "" {
		left = o.leftDelim
	}
	if right == "" {
		right = o.rightDelim
	}
	tmpl, err := render.NewTemplate(render.TemplateOptions{
		Name: name, Text: text, LeftDelim: left, RightDelim: right,
		ErrMissingKey: tc.ErrMissingKey, SandboxPath: tc.SandboxPath, FunctionDenylist: tc.FunctionDenylist,
	})
	if err != nil {
		return nil, usageError{err}
	}
	dest, err := filepath.Abs(tc.Destination)
	if err != nil {
		return nil, usageError{err}
	}
	if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
		return nil, usageError{fmt.Errorf("template %s: destination %s is a directory", name, dest)}
	}
	t := &render.Target{Template: tmpl, Destination: dest, Command: tc.Command, Check: tc.Check, Timeout: tc.CommandTimeout, Backup: tc.Backup,
		File: atomicfile.Options{Mode: tc.Perms, InPlaceFallback: true}}
	if tc.Wait != nil {
		t.Wait = *tc.Wait
	}
	if tc.User != "" || tc.Group != "" {
		uid, gid, err := atomicfile.Owner(tc.User, tc.Group)
		if err != nil {
			return nil, usageError{fmt.Errorf("template %s: %w", name, err)}
		}
		t.File.SetOwner, t.File.UID, t.File.GID = true, uid, gid
	}
	return t, nil
}

func runRender(cmd *cobra.Command, o *renderOptions) error {
	s, err := o.setup(cmd)
	if err != nil {
		return err
	}
	logger, err := newLogger(cmd.ErrOrStderr(), o.logLevel, o.logJSON)
	if err != nil {
		return err
	}
	c, err := client.New(client.Options{Address: s.addr, Token: s.token, Datacenter: o.datacenter, MaxConns: s.opts.Watch.MaxConnections, TLS: s.tls})
	if err != nil {
		return usageError{err}
	}
	var sink metrics.Sink = metrics.Discard
	if o.dogstatsd != "" {
		d, err := metrics.NewDogstatsd(o.dogstatsd, "kvx.")
		if err != nil {
			return usageError{err}
		}
		defer d.Close()
		sink = d
	}
	rr := &renderRun{o: o, cmd: cmd, logger: logger, metrics: sink,
		src: render.Source{KV: c.KV(), Health: c.Health(), Catalog: c.Catalog(), NodeName: c.Agent().NodeName}}
	rr.adopt(s)
	return rr.loop(cmd.Context())
}

// renderRun is a running render: its setup (replaced on the reload
// signal), and the -exec child, which outlives a reload.
type renderRun struct {
	o       *renderOptions
	cmd     *cobra.Command
	logger  *slog.Logger
	metrics metrics.Sink
	src     render.Source
	s       *renderSetup
	child   *render.Child
}

// adopt makes s the running setup; the running child stays unless s
// supervises a different command (then it is stopped, and s's child starts
// after the next complete pass).
func (rr *renderRun) adopt(s *renderSetup) {
	s.opts.Logger, s.opts.Metrics = rr.logger, rr.metrics
	s.opts.Watch.Logger = rr.logger
	if s.child != nil {
		s.child.Logger = rr.logger
	}
	switch {
	case rr.child == nil:
		rr.child = s.child
	case s.child == nil || s.child.Command != rr.child.Command:
		rr.logger.Info("the -exec command changed; stopping the old child")
		rr.child.Stop()
		rr.child = s.child
	default:
		rr.child.ReloadSignal, rr.child.KillSignal, rr.child.KillTimeout = s.child.ReloadSignal, s.child.KillSignal, s.child.KillTimeout
	}
	rr.s = s
}

// signals are those render acts on: its reload and kill signals, and those
// it forwards to the child.
func (rr *renderRun) signals() []os.Signal {
	sigs := []os.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}
	for _, sig := range []syscall.Signal{rr.s.reloadSignal, rr.s.killSignal} {
		if sig != 0 {
			sigs = append(sigs, sig)
		}
	}
	return sigs
}

// loop runs the job (templates, or envconsul mode) until it ends, the
// child exits or ctx or the kill signal stops it; the reload signal
// re-reads the configuration files and templates and starts the job again
// with them (a configuration that does not load is logged, and the running
// one stays); other signals go to the child.
func (rr *renderRun) loop(ctx context.Context) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, rr.signals()...)
	defer signal.Stop(sigs)
	for {
		jctx, stop := context.WithCancel(ctx)
		startErr := make(chan error, 1)
		jobErr := make(chan error, 1)
		go func() { jobErr <- rr.job(jctx, startErr) }()
		var childDone <-chan struct{}
		if rr.child != nil {
			childDone = rr.child.Done()
		}
	wait:
		select {
		case err := <-jobErr:
			stop()
			return rr.finish(err)
		case err := <-startErr:
			stop()
			<-jobErr
			return err
		case <-childDone:
			stop()
			<-jobErr
			return exitWith{rr.child.ExitCode()}
		case sig := <-sigs:
			switch {
			case sig == rr.s.killSignal:
				rr.logger.Info("stopping", "signal", sig)
				stop()
				return rr.finish(<-jobErr)
			case sig == rr.s.reloadSignal && rr.o.env.Prefix == "":
				rr.logger.Info("reloading the configuration", "signal", sig)
				s, err := rr.o.setup(rr.cmd)
				if err != nil {
					rr.logger.Error("reload failed; the running configuration stays", "err", err)
					goto wait
				}
				stop()
				<-jobErr
				rr.adopt(s)
			default:
				if rr.child != nil && rr.child.Running() {
					_ = rr.child.Signal(sig.(syscall.Signal))
				}
				goto wait
			}
		}
	}
}

// job is one run of the setup: the templates, started and reloaded with
// the child after each pass, or envconsul mode.
func (rr *renderRun) job(ctx context.Context, startErr chan<- error) error {
	s, child := rr.s, rr.child
	if rr.o.env.Prefix != "" {
		return render.RunEnv(ctx, rr.src, rr.o.env, child, s.opts.Watch)
	}
	opts := s.opts
	if child != nil {
		opts.Once = false // the child runs on; render follows the data for it
		opts.OnPass = func(complete bool, written []string) {
			switch {
			case !child.Running() && complete:
				if err := child.Start(); err != nil {
					startErr <- err
				}
			case child.Running() && len(written) > 0:
				if err := child.Reload(); err != nil {
					rr.logger.Error("reload child", "err", err)
				}
			}
		}
	}
	return render.NewRunner(rr.src, s.targets, opts).Run(ctx)
}

// finish turns the job's end into render's: with a child, the child is
// stopped and render exits with its code; a stop asked for by a signal is
// a clean exit.
func (rr *renderRun) finish(err error) error {
	if rr.child != nil {
		rr.child.Stop()
		if (err == nil || errors.Is(err, context.Canceled)) && rr.child.Running() {
			return exitWith{rr.child.ExitCode()}
		}
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// applySSL takes consul-template's consul.ssl block: what the flags (or
// CONSUL_* variables, read later) did not give. enabled = true makes a
// scheme-less address https://.
func (s *renderSetup) applySSL(ssl *render.SSLConfig) {
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&s.tls.CertFile, ssl.Cert}, {&s.tls.KeyFile, ssl.Key}, {&s.tls.CAFile, ssl.CACert},
		{&s.tls.CAPath, ssl.CAPath}, {&s.tls.ServerName, ssl.ServerName},
	} {
		if *f.dst == "" {
			*f.dst = f.v
		}
	}
	if ssl.Verify != nil && !*ssl.Verify {
		s.tls.Insecure = true
	}
	if ssl.Enabled != nil && *ssl.Enabled {
		addr := s.addr
		if addr == "" {
			addr = os.Getenv("CONSUL_HTTP_ADDR")
		}
		if addr == "" {
			addr = "127.0.0.1:8500"
		}
		if !strings.Contains(addr, "://") {
			s.addr = "https://" + addr
		}
	}
}
