//go:build !unix

package checks

import "os/exec"

// ownProcessGroup is a no-op where there are no process groups: only the
// script itself is killed at its timeout.
func ownProcessGroup(*exec.Cmd) {}
