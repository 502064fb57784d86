package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvxproject/kvx/pkg/servertest"
)

// TestInvalidKeysAreUsageErrors: a key the layout cannot hold is bad
// command-line input (exit 2, the flag and the key named), found before
// anything is read or written.
func TestInvalidKeysAreUsageErrors(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	src := writeFile(t, dir, "src", hostsFile(3, "k"))
	for _, key := range []string{"my key", "", "a//b", "../etc", "a/./b", " lead"} {
		for _, args := range [][]string{
			{"in", "-k", key, "-f", src},
			{"out", "-k", key, "-f", filepath.Join(dir, "t")},
			{"raw", "-k", key, "-f", filepath.Join(dir, "t")},
			{"status", "-k", key},
			{"stop", "-k", key, "-r", "why"},
			{"start", "-k", key},
			{"copy", "-from", key, "-to", "ok"},
			{"copy", "-from", "ok", "-to", key},
		} {
			out, errOut, code := kvx(t, srv, "", args...)
			if code != exitUsage || !strings.Contains(errOut, "-") || !strings.Contains(errOut, "key") {
				t.Errorf("kvx %q: exit %d, want %d naming the key\nstdout: %s\nstderr: %s", args, code, exitUsage, out, errOut)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "t")); err == nil {
		t.Error("a target was written for an invalid key")
	}
	if keys, _, _ := srv.Client.KV().Keys("", "", nil); len(keys) != 0 {
		t.Errorf("invalid keys wrote %q", keys)
	}
}

// TestEnvironmentSatisfiesRequiredFlags: KVX_KEY, KVX_FILE and KVX_REASON
// count as the flags they stand for, required ones included; a flag on the
// command line still wins.
func TestEnvironmentSatisfiesRequiredFlags(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	content := hostsFile(5, "env")
	src := writeFile(t, dir, "src", content)
	t.Setenv("KVX_KEY", "env/hosts")
	t.Setenv("KVX_FILE", src)
	out, errOut, code := kvx(t, srv, "", "in")
	expect(t, "in from KVX_KEY and KVX_FILE", code, 0, out, errOut, "uploaded kvx/env/hosts")
	target := filepath.Join(dir, "target")
	out, errOut, code = kvx(t, srv, "", "out", "-f", target)
	expect(t, "out with KVX_KEY", code, 0, out, errOut, "delivered env/hosts to "+target)
	t.Setenv("KVX_REASON", "frozen by env")
	out, errOut, code = kvx(t, srv, "", "stop")
	expect(t, "stop with KVX_KEY and KVX_REASON", code, 0, out, errOut, "stopped kvx/env/hosts: frozen by env")
	out, errOut, code = kvx(t, srv, "", "start", "-k", "other/key")
	expect(t, "a flag wins over KVX_KEY", code, 0, out, errOut, "started kvx/other/key")
	t.Setenv("KVX_REASON", "")
	os.Unsetenv("KVX_REASON")
	out, errOut, code = kvx(t, srv, "", "stop", "-k", "x")
	expect(t, "stop without a reason", code, exitUsage, out, errOut, "--reason is required")
}

// TestOneShotReportsOnce: a one-shot out says its result once: a success
// as one line on stdout and nothing on stderr, a refusal or a failure as
// one line on stderr and nothing on stdout (the log has it at debug).
func TestOneShotReportsOnce(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	src := writeFile(t, dir, "src", hostsFile(5, "once"))
	kvxOK(t, srv, "in", "-k", "once/hosts", "-f", src)
	target := filepath.Join(dir, "t")
	for _, tc := range []struct {
		name         string
		args         []string
		code         int
		stdoutLines  int
		stderrLines  int
		stderrPrefix string
	}{
		{"delivered", []string{"out", "-k", "once/hosts", "-f", target}, 0, 1, 0, ""},
		{"unchanged", []string{"out", "-k", "once/hosts", "-f", target}, 0, 1, 0, ""},
		{"refused", []string{"out", "-k", "once/hosts", "-f", target + ".2", "-l", "100"}, exitRefused, 0, 1, "kvx: refused: "},
		{"missing", []string{"out", "-k", "once/none", "-f", target + ".3"}, exitRefused, 0, 1, "kvx: refused: "},
		{"special file", []string{"out", "-k", "once/hosts", "-f", dir}, exitRefused, 0, 1, "kvx: refused: " + dir + " is a directory"},
		{"raw missing", []string{"raw", "-k", "once/none", "-f", target + ".4"}, exitRefused, 0, 1, "kvx: refused: "},
	} {
		out, errOut, code := kvx(t, srv, "", tc.args...)
		if code != tc.code || lineCount(out) != tc.stdoutLines || lineCount(errOut) != tc.stderrLines || !strings.HasPrefix(errOut, tc.stderrPrefix) {
			t.Errorf("%s: exit %d, %d stdout lines, %d stderr lines; want %d, %d, %d (%q)\nstdout: %s\nstderr: %s",
				tc.name, code, lineCount(out), lineCount(errOut), tc.code, tc.stdoutLines, tc.stderrLines, tc.stderrPrefix, out, errOut)
		}
	}
	// A failing command: one error, with the command's output.
	out, errOut, code := kvx(t, srv, "", "out", "-k", "once/hosts", "-f", target+".5", "-e", "echo broken-config; exit 4")
	if code != exitError || out != "" || !strings.HasPrefix(errOut, "kvx: delivered once/hosts to "+target+".5, but its command failed") ||
		!strings.Contains(errOut, "exit status 4") || !strings.Contains(errOut, "broken-config") || strings.Count(errOut, "exit status 4") != 1 {
		t.Errorf("failing command: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// Paths are printed absolute by every command, whatever was typed.
	t.Chdir(dir)
	out, errOut, code = kvx(t, srv, "", "freeze", "-f", "t", "-r", "test")
	expect(t, "freeze with a relative path", code, 0, out, errOut, "froze "+target+" on test-node")
	out, errOut, code = kvx(t, srv, "", "out", "-k", "once/hosts", "-f", "t")
	expect(t, "out with a relative path", code, exitRefused, out, errOut, target+" is frozen on test-node")
}

func lineCount(s string) int { return strings.Count(s, "\n") }

// TestNoIgnoredFlags: a command does not accept a flag it would ignore.
func TestNoIgnoredFlags(t *testing.T) {
	for _, args := range [][]string{
		{"raw", "-k", "a", "-f", "/tmp/x", "-p", "kvexpress"},
		{"raw", "-k", "a", "-f", "/tmp/x", "--node", "n"},
		{"status", "-k", "a", "--node", "n"},
		{"status", "-k", "a", "--dogstatsd-addr", "127.0.0.1:8125"},
		{"freeze", "-f", "/tmp/x", "--dogstatsd-addr", "127.0.0.1:8125"},
	} {
		_, errOut, code := run(t, t.Context(), args...)
		if code != exitUsage || !strings.Contains(errOut, "unknown") {
			t.Errorf("kvx %q: exit %d, %q; want a usage error", args, code, errOut)
		}
	}
}

// walk calls f for every command of the tree.
func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		walk(sub, f)
	}
}

// TestHelpSaysDefaultsOnce: no flag's help prints its default twice (a
// usage text naming a default and pflag's own "(default ...)").
func TestHelpSaysDefaultsOnce(t *testing.T) {
	root := newKVXCmd()
	walk(root, func(c *cobra.Command) {
		for _, line := range strings.Split(c.LocalFlags().FlagUsages(), "\n") {
			if strings.Count(line, "default") > 1 {
				t.Errorf("%s: %q", c.CommandPath(), strings.TrimSpace(line))
			}
		}
	})
}

// TestREADMECoversEveryCommandAndFlag: the README names every command of
// the tree (completion included) and documents every flag of each.
func TestREADMECoversEveryCommandAndFlag(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	root := newKVXCmd()
	root.InitDefaultCompletionCmd()
	walk(root, func(c *cobra.Command) {
		if c == root || c.Name() == "help" || c.Parent().Name() == "completion" {
			return
		}
		path := strings.TrimPrefix(c.CommandPath(), "kvx ")
		if !strings.Contains(readme, "kvx "+path) {
			t.Errorf("README does not mention `kvx %s`", path)
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			if !regexp.MustCompile(`(^|[^-\w])--?` + regexp.QuoteMeta(f.Name) + `\b`).MatchString(readme) {
				t.Errorf("README does not document `kvx %s -%s`", path, f.Name)
			}
		})
	})
}

// TestErrorMessagesSayThingsOnce: an error names its path and operation
// once, and a size refusal says the size it found, not the cap plus one.
func TestErrorMessagesSayThingsOnce(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	big := writeFile(t, dir, "big", strings.Repeat("0123456789abcdef\n", 300)) // 5,100 bytes
	if _, err := srv.Client.KV().Put(&kvPair{Key: "m/raw", Value: []byte("x\n")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  []string // each exactly once
	}{
		{"missing source", "", []string{"in", "-k", "m/x", "-f", missing}, exitError, []string{missing, "no such file"}},
		{"directory source", "", []string{"in", "-k", "m/x", "-f", dir}, exitError, []string{dir, "is a directory"}},
		{"file over the cap", "", []string{"in", "-k", "m/x", "-f", big, "--max-size", "1000"}, exitRefused,
			[]string{big, "5.1 kB (5100 bytes)", "cap of 1.0 kB (1000 bytes)"}},
		{"stdin over the cap", strings.Repeat("x\n", 600), []string{"in", "-k", "m/x", "-f", "-", "--max-size", "1000"}, exitRefused,
			[]string{"stdin: more than the cap of 1.0 kB (1000 bytes)"}},
		{"directory target", "", []string{"raw", "-k", "m/raw", "-f", dir}, exitRefused, []string{dir + " is a directory"}},
	} {
		out, errOut, code := kvx(t, srv, tc.stdin, tc.args...)
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", tc.name, code, tc.code, out, errOut)
		}
		for _, w := range tc.want {
			if n := strings.Count(errOut, w); n != 1 {
				t.Errorf("%s: %q appears %d times in %q", tc.name, w, n, errOut)
			}
		}
		if strings.Contains(errOut, "1001") {
			t.Errorf("%s: says the cap plus one: %q", tc.name, errOut)
		}
	}
}
