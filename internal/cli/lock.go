package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"strings"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/client"
)

// kvx lock is consul lock: the same key layout, session and flags, built on
// consul/api's Lock and Semaphore, so kvx lock and consul lock contend for
// the same lock.

const (
	// lockKillGrace is consul lock's lockKillGracePeriod: how long a child
	// has between SIGTERM and SIGKILL once the lock is lost.
	lockKillGrace = 5 * time.Second
	// lockMonitorRetryTime is consul lock's wait between monitor retries.
	lockMonitorRetryTime = time.Second
)

type lockOptions struct {
	httpAddr, token, datacenter string
	tls                         tlsClientFlags
	limit                       int
	name                        string
	passStdin                   bool
	shell                       bool
	timeout                     time.Duration
	try                         time.Duration
	monitorRetry                int
	childExitCode               bool
	verbose                     bool
	killGrace                   time.Duration
}

func newLockCmd() *cobra.Command {
	o := &lockOptions{}
	cmd := &cobra.Command{
		Use:   "lock [flags] PREFIX COMMAND...",
		Short: "Run a command while holding a lock (or one of -n semaphore slots), as consul lock",
		Long: `Acquire the lock PREFIX/.lock (or, with -n N > 1, one of N slots of the
semaphore at PREFIX), then run COMMAND with CONSUL_LOCK_HELD=true in its
environment. If the lock is lost, the child gets SIGTERM and, after
-kill-grace, SIGKILL. When the child exits, or kvx lock gets SIGINT or
SIGTERM (the child gets it too), the lock is released and its session
destroyed. The layout, session and flags are consul lock's: kvx lock and
consul lock contend for the same lock.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError{fmt.Errorf("a key prefix and a child command are required")}
			}
			return nil
		},
		Annotations: map[string]string{trailingCommand: "true"},
		RunE:        func(cmd *cobra.Command, args []string) error { return runLock(cmd, o, args) },
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // COMMAND's own flags are not ours
	o.tls.register(f)
	f.StringVar(&o.httpAddr, "http-addr", "", "server HTTP address (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500)")
	f.StringVar(&o.token, "token", "", "ACL token (default: CONSUL_HTTP_TOKEN)")
	f.StringVar(&o.datacenter, "datacenter", "", "datacenter to talk to (default: the server's)")
	f.IntVarP(&o.limit, "limit", "n", 1, "how many holders at once; above 1, a semaphore")
	f.StringVar(&o.name, "name", "", "name of the lock's session (default: consul lock's, from the command and prefix)")
	f.BoolVar(&o.passStdin, "pass-stdin", false, "give the child kvx lock's stdin")
	f.BoolVar(&o.shell, "shell", true, "run COMMAND with $SHELL -c (/bin/sh without SHELL), its words joined by spaces")
	f.DurationVar(&o.timeout, "timeout", 0, "give up (exit 1) if the lock is not held within this long; 0 waits forever")
	f.DurationVar(&o.try, "try", 0, "deprecated spelling of -timeout, as in consul lock")
	f.IntVar(&o.monitorRetry, "monitor-retry", 3, "how many 500 answers in a row, 1s apart, the lock monitor rides out before it declares the lock lost")
	f.BoolVar(&o.childExitCode, "child-exit-code", false, "exit with the child's exit code (consul lock exits 2 for any failure) instead of 0")
	f.BoolVar(&o.verbose, "verbose", false, "say what happens on stderr")
	f.DurationVar(&o.killGrace, "kill-grace", lockKillGrace, "time between SIGTERM and SIGKILL of the child once the lock is lost (consul lock's fixed 5s)")
	return cmd
}

// lockUnlock abstracts over a lock and a semaphore, as consul lock does.
type lockUnlock struct {
	lock    func(<-chan struct{}) (<-chan struct{}, error)
	unlock  func() error
	cleanup func() error
	inUse   error
}

func runLock(cmd *cobra.Command, o *lockOptions, args []string) error {
	if o.limit <= 0 {
		return usageError{fmt.Errorf("-n %d: the lock holder limit must be positive", o.limit)}
	}
	if cmd.Flags().Changed("try") && !cmd.Flags().Changed("timeout") {
		o.timeout = o.try
	}
	if o.timeout < 0 {
		return usageError{fmt.Errorf("-timeout %s: must not be negative", o.timeout)}
	}
	if o.monitorRetry < 0 {
		return usageError{fmt.Errorf("-monitor-retry %d: must be 0 or more", o.monitorRetry)}
	}
	if o.killGrace < 0 {
		return usageError{fmt.Errorf("-kill-grace %s: must not be negative", o.killGrace)}
	}
	prefix := strings.TrimPrefix(args[0], "/")
	child := args[1:]
	if o.name == "" {
		o.name = fmt.Sprintf("Consul lock for '%s' at '%s'", strings.Join(child, " "), prefix)
	}
	stderr := cmd.ErrOrStderr()
	say := func(format string, a ...any) {
		if o.verbose {
			fmt.Fprintf(stderr, "kvx lock: "+format+"\n", a...)
		}
	}
	c, err := client.New(client.Options{Address: o.httpAddr, Token: o.token, Datacenter: o.datacenter, TLS: o.tls.options()})
	if err != nil {
		return err
	}
	if _, err := c.Agent().NodeName(); err != nil {
		return fmt.Errorf("query the agent: %w", err)
	}
	// The session is made here rather than by the Lock, with the Lock's
	// defaults, so that it is destroyed before kvx lock exits (the Lock
	// destroys its own in the background, which an exit can cut short).
	sid, _, err := c.Session().Create(&consulapi.SessionEntry{Name: o.name, TTL: consulapi.DefaultLockSessionTTL}, nil)
	if err != nil {
		return fmt.Errorf("create the lock session: %w", err)
	}
	stopRenew := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		_ = c.Session().RenewPeriodic(consulapi.DefaultLockSessionTTL, sid, nil, stopRenew)
	}()
	defer func() {
		close(stopRenew)
		<-renewed // RenewPeriodic destroys the session when stopped
		say("session %s destroyed", sid)
	}()
	lu, err := setupLock(c, o, prefix, sid, say)
	if err != nil {
		return fmt.Errorf("lock setup %s: %w", prefix, err)
	}
	ctx := cmd.Context()
	say("attempting lock acquisition")
	lost, err := lu.lock(ctx.Done())
	if lost == nil {
		if err == nil {
			return errors.New("shutdown or -timeout during lock acquisition")
		}
		return fmt.Errorf("lock acquisition: %w", err)
	}
	code := 0
	if ctx.Err() == nil {
		code = runLocked(ctx, o, child, cmd, lost, say)
	}
	say("releasing the lock")
	if err := lu.unlock(); err != nil {
		return fmt.Errorf("lock release: %w", err)
	}
	if err := lu.cleanup(); err != nil {
		if !errors.Is(err, lu.inUse) {
			return fmt.Errorf("lock cleanup: %w", err)
		}
		say("cleanup skipped: the lock is in use")
	}
	if o.childExitCode && code != 0 {
		return exitWith{code}
	}
	return nil
}

func setupLock(c *consulapi.Client, o *lockOptions, prefix, session string, say func(string, ...any)) (*lockUnlock, error) {
	if o.limit == 1 {
		key := path.Join(prefix, consulapi.DefaultSemaphoreKey)
		say("setting up lock at path: %s", key)
		opts := &consulapi.LockOptions{Key: key, Session: session, MonitorRetries: o.monitorRetry,
			MonitorRetryTime: lockMonitorRetryTime}
		if o.timeout > 0 {
			opts.LockTryOnce, opts.LockWaitTime = true, o.timeout
		}
		l, err := c.LockOpts(opts)
		if err != nil {
			return nil, err
		}
		return &lockUnlock{lock: l.Lock, unlock: l.Unlock, cleanup: l.Destroy, inUse: consulapi.ErrLockInUse}, nil
	}
	say("setting up semaphore (limit %d) at prefix: %s", o.limit, prefix)
	opts := &consulapi.SemaphoreOptions{Prefix: prefix, Limit: o.limit, Session: session,
		MonitorRetries: o.monitorRetry, MonitorRetryTime: lockMonitorRetryTime}
	if o.timeout > 0 {
		opts.SemaphoreTryOnce, opts.SemaphoreWaitTime = true, o.timeout
	}
	s, err := c.SemaphoreOpts(opts)
	if err != nil {
		return nil, err
	}
	return &lockUnlock{lock: s.Acquire, unlock: s.Release, cleanup: s.Destroy, inUse: consulapi.ErrSemaphoreInUse}, nil
}

// runLocked runs the child while the lock is held and returns its exit code
// (1 if it could not start). A lost lock or a shutdown ends it: SIGTERM,
// then SIGKILL after the grace period.
func runLocked(ctx context.Context, o *lockOptions, args []string, cmd *cobra.Command, lost <-chan struct{}, say func(string, ...any)) int {
	var child *exec.Cmd
	if o.shell {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		child = exec.Command(sh, "-c", strings.Join(args, " "))
	} else {
		child = exec.Command(args[0], args[1:]...)
	}
	child.Env = append(os.Environ(), "CONSUL_LOCK_HELD=true")
	child.Stdout, child.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
	if o.passStdin {
		child.Stdin = cmd.InOrStdin()
	}
	// The child gets SIGTERM if kvx lock dies (SIGKILL included), so a job
	// does not outlive the lock holder that started it.
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	say("starting the child")
	if err := child.Start(); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "kvx lock: start %q: %v\n", strings.Join(args, " "), err)
		return 1
	}
	done := make(chan struct{})
	go func() { _ = child.Wait(); close(done) }()
	// SIGHUP, SIGUSR1 and SIGUSR2 are passed on to the child.
	fwd := make(chan os.Signal, 4)
	signal.Notify(fwd, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(fwd)
wait:
	for {
		select {
		case sig := <-fwd:
			_ = child.Process.Signal(sig)
		case <-done:
			say("child exited, releasing the lock")
			return exitCodeOf(child.ProcessState)
		case <-lost:
			say("lock lost, stopping the child")
			break wait
		case <-ctx.Done():
			say("shutdown, stopping the child")
			break wait
		}
	}
	_ = child.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(o.killGrace):
		say("child still running after %s, killing it", o.killGrace)
		_ = child.Process.Kill()
		<-done
	}
	return exitCodeOf(child.ProcessState)
}

// exitCodeOf is a process's exit code, 128+N for a death by signal N.
func exitCodeOf(ps *os.ProcessState) int {
	if ps == nil {
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
