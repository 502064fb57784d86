package render

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Child is the process render supervises (-exec): started after the first
// complete render, sent ReloadSignal when a render changes a file (or
// restarted when no signal is set), stopped with KillSignal then SIGKILL
// after KillTimeout. Its exit ends render with its code.
type Child struct {
	Command      string // run with sh -c
	ReloadSignal syscall.Signal
	KillSignal   syscall.Signal // default SIGTERM
	KillTimeout  time.Duration  // default 30s
	Env          func() []string
	Stdout       io.Writer
	Stderr       io.Writer
	Logger       *slog.Logger

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current process exits
	done     chan struct{} // closed when the child exits on its own
	stopping bool          // the current process is being stopped by us
	code     int
}

// ParseSignal reads a signal name ("SIGHUP", "HUP") or number; "" is 0.
func ParseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return 0, nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// Start starts the child.
func (c *Child) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start()
}

func (c *Child) start() error {
	cmd := exec.Command("/bin/sh", "-c", c.Command)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.Stdout, c.Stderr
	if c.Env != nil {
		cmd.Env = c.Env()
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %q: %w", c.Command, err)
	}
	exited := make(chan struct{})
	if c.done == nil {
		c.done = make(chan struct{})
	}
	c.cmd, c.exited, c.stopping = cmd, exited, false
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.code = exitStatus(err)
		if !c.stopping {
			close(c.done)
		}
		c.mu.Unlock()
		close(exited)
	}()
	c.log().Info("child started", "command", c.Command, "pid", cmd.Process.Pid)
	return nil
}

func exitStatus(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

func (c *Child) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Done is closed when the child exits on its own (not stopped or
// restarted by render); never before it has started.
func (c *Child) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
	}
	return c.done
}

// Running reports whether the child has been started.
func (c *Child) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd != nil
}

// ExitCode is the exited child's code (128+signal when killed by one).
func (c *Child) ExitCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code
}

// Signal sends sig to the child's process group (nothing before Start).
func (c *Child) Signal(sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	return syscall.Kill(-c.cmd.Process.Pid, sig)
}

// Reload tells the child its files changed: ReloadSignal, or a restart.
func (c *Child) Reload() error {
	if c.ReloadSignal != 0 {
		c.log().Info("reloading child", "signal", c.ReloadSignal)
		return c.Signal(c.ReloadSignal)
	}
	c.log().Info("restarting child")
	c.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start()
}

// Stop ends the child: KillSignal, then SIGKILL after KillTimeout.
func (c *Child) Stop() {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.stopping = true
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	sig, timeout := c.KillSignal, c.KillTimeout
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-exited:
	case <-time.After(timeout):
		c.log().Warn("child did not stop; killing it", "timeout", timeout)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}
