package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/servertest"
)

func putKV(t *testing.T, srv *servertest.Server, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if _, err := srv.Client.KV().Put(&consulapi.KVPair{Key: kv[i], Value: []byte(kv[i+1])}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// A consul-template command line runs unchanged with render in its place:
// -consul-addr, -once, -template in:out:command.
func TestRenderOnceConsulTemplateFlags(t *testing.T) {
	srv := servertest.Start(t)
	putKV(t, srv, "app/port", "8080", "app/hosts/a", "10.0.0.1", "app/hosts/b", "10.0.0.2")
	dir := t.TempDir()
	in := writeFile(t, dir, "in.ctmpl", `port {{ key "app/port" }}
{{ range ls "app/hosts" }}server {{ .Key }} {{ .Value }}
{{ end }}`)
	out := filepath.Join(dir, "deep", "out.conf")
	ran := filepath.Join(dir, "ran")
	var stdout, stderr servertest.Buffer
	err := execute(context.Background(), []string{"render", "-consul-addr", srv.HTTPAddr(), "-once", "-template", in + ":" + out + ":echo done > " + ran}, strings.NewReader(""), &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got, want := readOrEmpty(out), "port 8080\nserver a 10.0.0.1\nserver b 10.0.0.2\n"; got != want {
		t.Fatalf("rendered %q, want %q", got, want)
	}
	if got := readOrEmpty(ran); got != "done\n" {
		t.Fatalf("command output %q", got)
	}
}

func readOrEmpty(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// Bad input: a missing key under -once fails listing it; a parse error
// names the file, line and column; a destination that is a directory is
// refused; no templates is a usage error.
func TestRenderErrors(t *testing.T) {
	srv := servertest.Start(t)
	dir := t.TempDir()
	good := writeFile(t, dir, "good.ctmpl", `{{ key "not/there" }}`)
	bad := writeFile(t, dir, "bad.ctmpl", "ok\n{{ keyy \"x\" }}")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-once", "-once-timeout", "300ms", "-template", good + ":" + filepath.Join(dir, "o1")}, 1, good + " needs kv.block(not/there)"},
		{[]string{"-once", "-template", bad + ":" + filepath.Join(dir, "o2")}, 2, bad + `:2:4: unknown function "keyy"`},
		{[]string{"-once", "-template", good + ":" + dir}, 2, "is a directory"},
		{[]string{"-once"}, 2, "no templates"},
		{[]string{"-once", "-template", good}, 2, "SOURCE:DESTINATION"},
	} {
		var stdout, stderr servertest.Buffer
		err := execute(context.Background(), append([]string{"render", "-http-addr", srv.HTTPAddr()}, tc.args...), strings.NewReader(""), &stdout, &stderr)
		code := exitCode(err, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("render %q: exit %d, stderr %q; want %d with %q", tc.args, code, stderr.String(), tc.code, tc.msg)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "o1")); err == nil {
		t.Error("a template with missing data was written")
	}
}

func buildTool(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}

// The render binary, long-running with an -exec child: the child starts
// after the first render, gets the reload signal when a KV change
// re-renders the file, and render exits with the child's code.
func TestRenderProcessExecReloadsChild(t *testing.T) {
	srv := servertest.Start(t)
	bin := buildTool(t, "render")
	putKV(t, srv, "greeting", "hello")
	dir := t.TempDir()
	in := writeFile(t, dir, "in.ctmpl", `{{ key "greeting" }}`)
	out := filepath.Join(dir, "out")
	hups := filepath.Join(dir, "hups")
	stop := filepath.Join(dir, "stop")
	child := `trap 'echo hup >> ` + hups + `' HUP; while [ ! -e ` + stop + ` ]; do sleep 0.02; done; exit 7`
	cmd := exec.Command(bin, "-http-addr", srv.HTTPAddr(), "-template", in+":"+out, "-exec", child, "-exec-reload-signal", "SIGHUP")
	var log servertest.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	servertest.Eventually(t, "the first render and the child", func() bool {
		return readOrEmpty(out) == "hello" && strings.Contains(log.String(), "child started")
	})
	if readOrEmpty(hups) != "" {
		t.Fatalf("child reloaded before any change: %q", readOrEmpty(hups))
	}
	putKV(t, srv, "greeting", "bonjour")
	servertest.Eventually(t, "the re-render and the child's reload", func() bool {
		return readOrEmpty(out) == "bonjour" && readOrEmpty(hups) == "hup\n"
	})
	writeFile(t, dir, "stop", "")
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 7 {
			t.Fatalf("render exited %v, want the child's code 7\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Signal(syscall.SIGQUIT)
		t.Fatalf("render did not exit after its child\n%s", log.String())
	}
}

// envconsul mode: the keys under the prefix are the child's environment
// (upper-cased, sanitized); a change restarts the child with the new
// values; kvx env exits with the child's code.
func TestEnvModeRestartsChild(t *testing.T) {
	srv := servertest.Start(t)
	putKV(t, srv, "envtest/greeting", "hello", "envtest/db-host", "db1")
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	child := `echo "$GREETING $DB_HOST" >> ` + seen + `; [ "$GREETING" = bye ] && exit 3; exec sleep 60`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	codec := make(chan int, 1)
	var stdout, stderr servertest.Buffer
	go func() {
		err := execute(ctx, []string{"env", "-http-addr", srv.HTTPAddr(), "-env-prefix", "envtest", "-env-upcase", "-env-sanitize", "-exec", child}, strings.NewReader(""), &stdout, &stderr)
		codec <- exitCode(err, &stderr)
	}()
	servertest.Eventually(t, "the child with the first environment", func() bool { return readOrEmpty(seen) == "hello db1\n" })
	putKV(t, srv, "envtest/greeting", "bonjour")
	servertest.Eventually(t, "the child restarted with the new environment", func() bool { return readOrEmpty(seen) == "hello db1\nbonjour db1\n" })
	putKV(t, srv, "envtest/greeting", "bye")
	select {
	case code := <-codec:
		if code != 3 {
			t.Fatalf("kvx env exited %d, want the child's 3\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kvx env did not exit with its child\n%s", stderr.String())
	}
	if got := readOrEmpty(seen); got != "hello db1\nbonjour db1\nbye db1\n" {
		t.Fatalf("child runs saw %q", got)
	}
}

// Configuration keys render reads but does not act on are named in a
// warning, not silently accepted.
func TestRenderWarnsOfIgnoredConfigKeys(t *testing.T) {
	srv := servertest.Start(t)
	putKV(t, srv, "k", "v")
	dir := t.TempDir()
	conf := writeFile(t, dir, "r.hcl", "kill_signal = \"SIGINT\"\nerr_on_failed_lookup = true\ntemplate {\n  contents = \"{{ key \\\"k\\\" }}\"\n  destination = \""+filepath.Join(dir, "out")+"\"\n}\n")
	var stdout, stderr servertest.Buffer
	err := execute(context.Background(), []string{"render", "-http-addr", srv.HTTPAddr(), "-once", "-config", conf}, strings.NewReader(""), &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 0 || readOrEmpty(filepath.Join(dir, "out")) != "v" {
		t.Fatalf("exit %d, out %q: %s", code, readOrEmpty(filepath.Join(dir, "out")), stderr.String())
	}
	for _, k := range []string{"r.hcl: kill_signal", "r.hcl: err_on_failed_lookup"} {
		if !strings.Contains(stderr.String(), k) {
			t.Errorf("no warning naming %q in %q", k, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "reload_signal") {
		t.Errorf("warned of reload_signal, which the file does not set: %q", stderr.String())
	}
}
