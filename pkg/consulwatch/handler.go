package consulwatch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Script runs a command per result, as consul watch's script handler: the
// result's JSON on its stdin, CONSUL_INDEX in its environment.
type Script struct {
	// Args is the command: with Shell, its words joined by spaces and run
	// by $SHELL -c (/bin/sh without SHELL); else run as they are.
	Args           []string
	Shell          bool
	Stdout, Stderr io.Writer
}

// Handle runs the command; a non-zero exit is an error. When ctx ends (the
// handler timeout) the command's process group gets SIGTERM, and SIGKILL
// 5 s later.
func (s *Script) Handle(ctx context.Context, index uint64, body []byte) error {
	var cmd *exec.Cmd
	if s.Shell {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		cmd = exec.CommandContext(ctx, sh, "-c", strings.Join(s.Args, " "))
	} else {
		cmd = exec.CommandContext(ctx, s.Args[0], s.Args[1:]...)
	}
	cmd.Env = append(os.Environ(), "CONSUL_INDEX="+strconv.FormatUint(index, 10))
	cmd.Stdin = bytes.NewReader(body)
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil && err != nil {
		return fmt.Errorf("handler %q: stopped after its timeout: %w", strings.Join(s.Args, " "), err)
	}
	if err != nil {
		return fmt.Errorf("handler %q: %w", strings.Join(s.Args, " "), err)
	}
	return nil
}

// Print writes each result's JSON, as consul watch does without a handler.
type Print struct{ W io.Writer }

// Handle writes body.
func (p *Print) Handle(_ context.Context, _ uint64, body []byte) error {
	_, err := p.W.Write(body)
	return err
}
