package cli

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// Real kvx processes against a real in-process server: the target-type
// rule (a device, FIFO, socket, directory or unfollowed link is refused
// with exit 3 and left as it was), as root and as an unprivileged user,
// and SIGTERM ending every kind of wait.

// waitProc waits for cmd to exit, failing the test if it has not after a
// generous deadline (a blocked process never exits on its own).
func waitProc(t *testing.T, cmd *exec.Cmd, what string) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not exit", what)
		return -1
	}
}

// blockedIn polls until one of pid's threads sleeps in a kernel function
// whose name contains want (/proc/PID/task/*/wchan): the process is then
// really waiting where the test means it to.
func blockedIn(t *testing.T, pid int, want string) {
	t.Helper()
	servertest.Eventually(t, "kvx blocked in "+want, func() bool {
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "wchan"))
		for _, w := range tasks {
			if b, _ := os.ReadFile(w); strings.Contains(string(b), want) {
				return true
			}
		}
		return false
	})
}

func TestOutRefusesSpecialFilesAsRootAndUser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildKVX(t)
	srv := servertest.Start(t)
	src := writeFile(t, t.TempDir(), "src", hostsFile(10, "special"))
	if out, err := exec.Command(bin, "in", "-k", "sp/hosts", "-f", src, "-http-addr", srv.HTTPAddr()).CombinedOutput(); err != nil {
		t.Fatalf("kvx in: %v\n%s", err, out)
	}
	users := []struct {
		name string
		cred *syscall.Credential
	}{{"as this user", nil}}
	if os.Geteuid() == 0 {
		users = append(users, struct {
			name string
			cred *syscall.Credential
		}{"as nobody", &syscall.Credential{Uid: 65534, Gid: 65534}})
	}
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			// A directory an unprivileged user can reach and write, and a
			// copy of the binary it can run.
			dir, err := os.MkdirTemp("", "kvx-special-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			exe := filepath.Join(dir, "kvx")
			copyFile(t, bin, exe, 0o755)
			targets := map[string]string{}
			fifo := filepath.Join(dir, "fifo")
			if err := syscall.Mkfifo(fifo, 0o666); err != nil {
				t.Fatal(err)
			}
			targets[fifo] = "FIFO"
			sub := filepath.Join(dir, "dir")
			if err := os.Mkdir(sub, 0o777); err != nil {
				t.Fatal(err)
			}
			targets[sub] = "directory"
			ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			targets[filepath.Join(dir, "sock")] = "socket"
			null := filepath.Join(dir, "null")
			if os.Geteuid() == 0 {
				if err := syscall.Mknod(null, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
					t.Fatal(err)
				}
				targets[null] = "character device"
			}
			real := writeFile(t, dir, "real", "mine\n")
			os.Chmod(real, 0o666)
			if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			targets[filepath.Join(dir, "link")] = "symbolic link"
			if err := os.Symlink("/dev/null", filepath.Join(dir, "devnull")); err != nil {
				t.Fatal(err)
			}
			targets[filepath.Join(dir, "devnull")] = "symbolic link"

			for path, typ := range targets {
				for _, args := range [][]string{
					{"out", "-k", "sp/hosts", "-f", path, "-http-addr", srv.HTTPAddr(), "-node", "n1"},
					{"raw", "-k", "kvx/sp/hosts/checksum", "-f", path, "-http-addr", srv.HTTPAddr()},
				} {
					before, _ := os.Lstat(path)
					cmd := exec.Command(exe, args...)
					cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
					var stdout, stderr strings.Builder
					cmd.Stdout, cmd.Stderr = &stdout, &stderr
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					if code := waitProc(t, cmd, "kvx "+args[0]+" to a "+typ); code != exitRefused {
						t.Errorf("kvx %s -f %s (%s): exit %d, want 3\n%s%s", args[0], path, typ, code, stdout.String(), stderr.String())
					}
					if msg := stdout.String() + stderr.String(); !strings.Contains(msg, path+" is a "+typ) {
						t.Errorf("kvx %s -f %s: output does not name the path and its type %q:\n%s", args[0], path, typ, msg)
					}
					if strings.Contains(stdout.String(), "delivered") {
						t.Errorf("kvx %s -f %s printed delivered", args[0], path)
					}
					after, err := os.Lstat(path)
					if err != nil || after.Mode() != before.Mode() || !os.SameFile(before, after) {
						t.Errorf("kvx %s changed %s (%s): %v -> %v", args[0], path, typ, before.Mode(), after.Mode())
					}
				}
			}
			if b, _ := os.ReadFile(real); string(b) != "mine\n" {
				t.Errorf("a link's target was written without --follow-symlinks: %q", b)
			}
			if fi, err := os.Stat("/dev/null"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
				t.Fatalf("/dev/null is no longer a character device: %v %v", fi.Mode(), err)
			}
			// With --follow-symlinks the link's target is replaced, the link kept.
			cmd := exec.Command(exe, "out", "-k", "sp/hosts", "-f", filepath.Join(dir, "link"), "--follow-symlinks", "-http-addr", srv.HTTPAddr(), "-node", "n1")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("out --follow-symlinks: %v\n%s", err, out)
			}
			if b, _ := os.ReadFile(real); string(b) != hostsFile(10, "special") {
				t.Errorf("link target after --follow-symlinks: %q", b)
			}
			if fi, _ := os.Lstat(filepath.Join(dir, "link")); fi.Mode()&os.ModeSymlink == 0 {
				t.Error("--follow-symlinks replaced the link itself")
			}
		})
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSIGTERMEndsEveryWait: a kvx command blocked on a FIFO without a
// writer, on stdin, in its -e command, or on a server that accepts and
// never answers, exits promptly and by itself on SIGTERM (exit 1 with the
// reason, not killed by the signal), leaving no command running.
func TestSIGTERMEndsEveryWait(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	bin := buildKVX(t)
	srv := servertest.Start(t)
	dir := t.TempDir()
	src := writeFile(t, dir, "src", hostsFile(10, "sig"))
	if out, err := exec.Command(bin, "in", "-k", "sig/hosts", "-f", src, "-http-addr", srv.HTTPAddr()).CombinedOutput(); err != nil {
		t.Fatalf("kvx in: %v\n%s", err, out)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// A server that accepts connections and never answers.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	connected := func(t *testing.T, _ int) { // a new connection to the hung server
		select {
		case c := <-accepted:
			conns = append(conns, c)
		case <-time.After(30 * time.Second):
			t.Fatal("kvx never connected")
		}
	}
	marker := filepath.Join(dir, "command-started")
	pidFile := filepath.Join(dir, "command-pid")

	cases := []struct {
		name    string
		args    []string
		stdin   bool
		blocked func(t *testing.T, pid int)
	}{
		{"in from a FIFO without a writer", []string{"in", "-k", "sig/x", "-f", fifo, "-http-addr", srv.HTTPAddr()}, false,
			func(t *testing.T, pid int) { blockedIn(t, pid, "wait_for_partner") }},
		{"in from stdin that never ends", []string{"in", "-k", "sig/x", "-f", "-", "-http-addr", srv.HTTPAddr()}, true,
			func(t *testing.T, pid int) { blockedIn(t, pid, "pipe_read") }},
		{"out running its command", []string{"out", "-k", "sig/hosts", "-f", filepath.Join(dir, "target"), "-http-addr", srv.HTTPAddr(),
			"-e", "echo $$ > " + pidFile + "; touch " + marker + "; exec sleep 600"}, false,
			func(t *testing.T, pid int) {
				servertest.Eventually(t, "the command running", func() bool { _, err := os.Stat(marker); return err == nil })
			}},
		{"out --watch on a server that never answers", []string{"out", "--watch", "-k", "sig/hosts", "-f", filepath.Join(dir, "t2"), "-http-addr", hung.Addr().String()}, false, connected},
		{"status on a server that never answers", []string{"status", "-k", "sig/hosts", "-http-addr", hung.Addr().String()}, false, connected},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, c.args...)
			var stderr servertest.Buffer
			cmd.Stderr = &stderr
			if c.stdin {
				w, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			c.blocked(t, cmd.Process.Pid)
			cmd.Process.Signal(syscall.SIGTERM)
			code := waitProc(t, cmd, "kvx "+c.args[0]+" after SIGTERM")
			if code < 0 {
				t.Fatalf("kvx %s was killed by the signal instead of stopping itself:\n%s", c.args[0], stderr.String())
			}
			if c.args[1] != "--watch" && code != exitError {
				t.Errorf("exit %d after SIGTERM, want %d:\n%s", code, exitError, stderr.String())
			}
		})
	}
	// The command's process group went with it.
	if b, err := os.ReadFile(pidFile); err == nil {
		pid := strings.TrimSpace(string(b))
		servertest.Eventually(t, "the command's sleep gone", func() bool {
			_, err := os.Stat("/proc/" + pid)
			return err != nil
		})
	} else {
		t.Errorf("the command never ran: %v", err)
	}
}
