package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"

	"github.com/kvxproject/kvx/pkg/atomicfile"
)

// now is the clock timestamp reads; tests pin it.
var now = time.Now

// timestamp formats now: RFC 3339 by default, "unix" for seconds since the
// epoch, or any Go time layout.
func timestamp(s ...string) (string, error) {
	switch len(s) {
	case 0:
		return now().Format(time.RFC3339), nil
	case 1:
		if s[0] == "unix" {
			return strconv.FormatInt(now().Unix(), 10), nil
		}
		return now().Format(s[0]), nil
	}
	return "", fmt.Errorf("timestamp: wrong number of arguments, expected 0 or 1, but got %d", len(s))
}

// executeTemplateFunc runs a {{define}}d template of t with an optional dot.
func executeTemplateFunc(t *template.Template) func(string, ...any) (string, error) {
	return func(name string, data ...any) (string, error) {
		var dot any
		switch len(data) {
		case 0:
		case 1:
			dot = data[0]
		default:
			return "", fmt.Errorf("executeTemplate: wrong number of arguments, expected 1 or 2, but got %d", len(data)+1)
		}
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, name, dot); err != nil {
			return "", err
		}
		return b.String(), nil
	}
}

// PluginTimeout bounds a plugin's run (consul-template's is 30 s).
var PluginTimeout = 30 * time.Second

// plugin runs an executable with the trimmed, non-empty arguments and
// returns its trimmed stdout; a failure or timeout is an error with its
// output. The plugin runs in its own process group, killed whole at the
// timeout.
func plugin(name string, args ...string) (string, error) {
	if name == "" {
		return "", nil
	}
	var argv []string
	for _, a := range args {
		if a = strings.TrimSpace(a); a != "" {
			argv = append(argv, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), PluginTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("plugin %q: did not finish in %s", name, PluginTimeout)
	}
	if err != nil {
		return "", fmt.Errorf("plugin %q: %w\nstdout:\n%s\nstderr:\n%s", name, err, stdout.Bytes(), stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// writeToFile writes content to path with owner, group and octal
// permissions (consul-template's argument order; flags "append" and
// "newline" before the content). It returns "". A symbolic link at the path
// or its directory is refused; a plain write is atomic.
func writeToFile(path, owner, group, perms string, args ...string) (string, error) {
	if len(args) == 0 || len(args) > 2 {
		return "", fmt.Errorf("writeToFile: want path, owner, group, permissions, [flags,] content")
	}
	flags, content := "", args[len(args)-1]
	if len(args) == 2 {
		flags = args[0]
	}
	mode, err := strconv.ParseUint(perms, 8, 32)
	if err != nil {
		return "", fmt.Errorf("writeToFile %s: permissions %q: want octal", path, perms)
	}
	if strings.Contains(flags, "newline") {
		content += "\n"
	}
	clean := filepath.Clean(path)
	dir := filepath.Dir(clean)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("writeToFile: %w", err)
	}
	if fi, err := os.Lstat(dir); err != nil {
		return "", fmt.Errorf("writeToFile: %w", err)
	} else if fi.Mode()&os.ModeSymlink != 0 {
		return "", fmt.Errorf("writeToFile: refusing to write through symlinked directory in path %q", path)
	}
	o := atomicfile.Options{Mode: os.FileMode(mode)}
	if owner != "" || group != "" {
		uid, gid, err := atomicfile.Owner(owner, group)
		if err != nil {
			return "", fmt.Errorf("writeToFile %s: %w", path, err)
		}
		o.SetOwner, o.UID, o.GID = true, uid, gid
	}
	if strings.Contains(flags, "append") {
		f, err := atomicfile.OpenWrite(clean, os.O_APPEND)
		if errors.Is(err, os.ErrNotExist) {
			f, err = os.OpenFile(clean, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, os.FileMode(mode))
		}
		if err != nil {
			return "", fmt.Errorf("writeToFile: %w", err)
		}
		defer f.Close()
		if _, err := f.WriteString(content); err != nil {
			return "", fmt.Errorf("writeToFile: %w", err)
		}
		if o.SetOwner {
			if err := f.Chown(o.UID, o.GID); err != nil {
				return "", fmt.Errorf("writeToFile: %w", err)
			}
		}
		if err := f.Chmod(os.FileMode(mode)); err != nil {
			return "", fmt.Errorf("writeToFile: %w", err)
		}
		return "", f.Close()
	}
	if _, err := atomicfile.Write(clean, []byte(content), o); err != nil {
		return "", fmt.Errorf("writeToFile: %w", err)
	}
	return "", nil
}

// sprigFuncs are sprig's hermetic text functions under a sprig_ prefix, as
// consul-template mounts them.
func sprigFuncs() template.FuncMap {
	m := template.FuncMap{}
	for k, v := range sprig.HermeticTxtFuncMap() {
		m["sprig_"+k] = v
	}
	return m
}
