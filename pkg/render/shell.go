package render

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// outputCap bounds what is kept of a command's output for the log.
const outputCap = 4 << 10

// cappedBuffer keeps the first outputCap bytes written to it.
type cappedBuffer struct{ bytes.Buffer }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := outputCap - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// runShell runs c with sh -c in a process group of its own, killed whole
// when timeout passes or ctx ends, and returns its combined output.
func runShell(ctx context.Context, c string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out cappedBuffer
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 500 * time.Millisecond
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return out.Bytes(), fmt.Errorf("timed out after %s", timeout)
	}
	return out.Bytes(), err
}
