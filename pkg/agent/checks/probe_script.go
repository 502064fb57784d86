package checks

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

// scriptProbe is a script check: the program in args runs, exit 0 is
// passing, 1 warning, anything else critical; its output is stdout and
// stderr together. At the timeout the whole process group is killed, so a
// script's children die with it.
type scriptProbe struct {
	args      []string
	timeout   time.Duration
	outputMax int
}

func (p *scriptProbe) probe(ctx context.Context) (string, string) {
	tctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, p.args[0], p.args[1:]...)
	out := &tailBuffer{size: p.outputMax}
	cmd.Stdout, cmd.Stderr = out, out // one writer: exec writes to it from one goroutine
	ownProcessGroup(cmd)
	// If a killed script left something holding its output open, stop
	// waiting for it soon after.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return config.StatusCritical, err.Error()
	}
	err := cmd.Wait()
	if ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
		msg := fmt.Sprintf("Timed out (%s) running check", p.timeout)
		if s := scriptOutput(out, p.outputMax-len(msg)-2); s != "" {
			msg += "\n\n" + s
		}
		return config.StatusCritical, msg
	}
	output := scriptOutput(out, p.outputMax)
	if cmd.ProcessState == nil {
		return config.StatusCritical, err.Error()
	}
	// The exit status decides, even when Wait also reports output left
	// open by a background child (exec.ErrWaitDelay).
	switch cmd.ProcessState.ExitCode() {
	case 0:
		return config.StatusPassing, output
	case 1:
		return config.StatusWarning, output
	}
	return config.StatusCritical, output
}
