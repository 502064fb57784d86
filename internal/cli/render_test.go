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

// envconsul mode with -exec-reload-signal: a change sends the child the
// signal instead of restarting it (envconsul never implemented this).
func TestEnvModeSignalsChild(t *testing.T) {
	srv := servertest.Start(t)
	putKV(t, srv, "envsig/greeting", "hello")
	dir := t.TempDir()
	seen, stop := filepath.Join(dir, "seen"), filepath.Join(dir, "stop")
	child := `echo "start $greeting" >> ` + seen + `; trap 'echo usr1 >> ` + seen + `' USR1; while [ ! -e ` + stop + ` ]; do sleep 0.02; done; exit 4`
	codec := make(chan int, 1)
	var stdout, stderr servertest.Buffer
	go func() {
		err := execute(context.Background(), []string{"env", "-http-addr", srv.HTTPAddr(), "-env-prefix", "envsig", "-exec", child, "-exec-reload-signal", "SIGUSR1"}, strings.NewReader(""), &stdout, &stderr)
		codec <- exitCode(err, &stderr)
	}()
	servertest.Eventually(t, "the child started", func() bool { return readOrEmpty(seen) == "start hello\n" })
	putKV(t, srv, "envsig/greeting", "bonjour")
	servertest.Eventually(t, "the child signalled, not restarted", func() bool { return readOrEmpty(seen) == "start hello\nusr1\n" })
	writeFile(t, dir, "stop", "")
	select {
	case code := <-codec:
		if code != 4 {
			t.Fatalf("kvx env exited %d, want the child's 4\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kvx env did not exit with its child\n%s", stderr.String())
	}
}

// err_on_failed_lookup (config file) and -err-on-failed-lookup: a key the
// server says does not exist ends a long-running render at once with exit 1
// naming the key and the template, instead of a wait.
func TestRenderErrOnFailedLookup(t *testing.T) {
	srv := servertest.Start(t)
	putKV(t, srv, "k", "v")
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "in.ctmpl", `{{ key "k" }} {{ key "not/there" }}`)
	conf := writeFile(t, dir, "r.hcl", "err_on_failed_lookup = true\ntemplate {\n  source = \""+tmpl+"\"\n  destination = \""+filepath.Join(dir, "out")+"\"\n}\n")
	for _, args := range [][]string{{"-config", conf}, {"-err-on-failed-lookup", "-template", tmpl + ":" + filepath.Join(dir, "out")}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var stdout, stderr servertest.Buffer
		err := execute(ctx, append([]string{"render", "-http-addr", srv.HTTPAddr()}, args...), strings.NewReader(""), &stdout, &stderr)
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("%q: render waited for the missing key instead of failing", args)
		}
		if code := exitCode(err, &stderr); code != 1 || !strings.Contains(stderr.String(), "no such key") || !strings.Contains(stderr.String(), tmpl+" needs kv.block(not/there)") {
			t.Fatalf("%q: exit %d, stderr %q; want 1 naming the key and template", args, code, stderr.String())
		}
		if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
			t.Fatalf("%q: a template with a failed lookup was written", args)
		}
	}
}

// startRender starts the render binary with args and returns it with its
// log; the test kills it if it is still running at the end.
func startRender(t *testing.T, bin string, args ...string) (*exec.Cmd, *servertest.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	log := &servertest.Buffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, log
}

// waitExit waits for cmd to exit and returns its code.
func waitExit(t *testing.T, cmd *exec.Cmd, log *servertest.Buffer) int {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatalf("process did not exit\n%s", log.String())
		return -1
	}
}

// The render process's own signals, from its config file: the reload
// signal (SIGHUP by default) re-reads the templates; a configuration that
// no longer loads is logged and the running one stays; kill_signal stops
// render cleanly.
func TestRenderProcessReloadAndKillSignals(t *testing.T) {
	srv := servertest.Start(t)
	bin := buildTool(t, "render")
	putKV(t, srv, "name", "web")
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "in.ctmpl", `v1 {{ key "name" }}`)
	out := filepath.Join(dir, "out")
	good := "kill_signal = \"SIGUSR1\"\ntemplate {\n  source = \"" + tmpl + "\"\n  destination = \"" + out + "\"\n}\n"
	conf := writeFile(t, dir, "r.hcl", good)
	cmd, log := startRender(t, bin, "-http-addr", srv.HTTPAddr(), "-config", conf)
	servertest.Eventually(t, "the first render", func() bool { return readOrEmpty(out) == "v1 web" })

	writeFile(t, dir, "in.ctmpl", `v2 {{ key "name" }}`)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the re-read template rendered", func() bool { return readOrEmpty(out) == "v2 web" })

	writeFile(t, dir, "r.hcl", good+"template {\n  bogus = 1\n}\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the failed reload logged", func() bool {
		return strings.Contains(log.String(), "reload failed") && strings.Contains(log.String(), "bogus")
	})
	putKV(t, srv, "name", "api")
	servertest.Eventually(t, "the running configuration still rendering", func() bool { return readOrEmpty(out) == "v2 api" })

	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, log); code != 0 {
		t.Fatalf("render stopped by its kill signal exited %d\n%s", code, log.String())
	}
}

// A long-running render process follows the catalog and KV: a check turning
// critical re-renders without that instance; a change that rewrites two
// templates sharing a command runs it once; a -check that refuses the new
// file keeps the old one.
func TestRenderProcessFollowsChecksAndCommands(t *testing.T) {
	srv := servertest.Start(t)
	bin := buildTool(t, "render")
	for i, addr := range []string{"10.0.0.1", "10.0.0.2"} {
		node := "n" + string(rune('1'+i))
		if _, err := srv.Client.Catalog().Register(&consulapi.CatalogRegistration{
			Node: node, Address: addr,
			Service: &consulapi.AgentService{ID: "web", Service: "web", Port: 80},
			Check:   &consulapi.AgentCheck{Node: node, CheckID: "web-http", Name: "http", Status: consulapi.HealthPassing, ServiceID: "web"},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	putKV(t, srv, "gen", "1", "b", "ok")
	dir := t.TempDir()
	a := writeFile(t, dir, "a.ctmpl", `{{ key "gen" }}:{{ range service "web" }} {{ .Address }}{{ end }}`)
	b := writeFile(t, dir, "b.ctmpl", `{{ key "gen" }}:{{ key "b" }}`)
	outA, outB, ran := filepath.Join(dir, "a.out"), filepath.Join(dir, "b.out"), filepath.Join(dir, "ran")
	command := "echo pass >> " + ran
	conf := writeFile(t, dir, "r.hcl", `template {
  source = "`+a+`"
  destination = "`+outA+`"
  command = "`+command+`"
}
template {
  source = "`+b+`"
  destination = "`+outB+`"
  command = "`+command+`"
  check = "! grep -q bad {{.Path}}"
}
`)
	lines := func() int { return strings.Count(readOrEmpty(ran), "\n") }
	_, log := startRender(t, bin, "-http-addr", srv.HTTPAddr(), "-config", conf)
	servertest.Eventually(t, "the first pass", func() bool {
		return readOrEmpty(outA) == "1: 10.0.0.1 10.0.0.2" && readOrEmpty(outB) == "1:ok" && lines() == 1
	})

	if _, err := srv.Client.Catalog().Register(&consulapi.CatalogRegistration{
		Node: "n2", Address: "10.0.0.2",
		Check: &consulapi.AgentCheck{Node: "n2", CheckID: "web-http", Name: "http", Status: consulapi.HealthCritical, ServiceID: "web"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the re-render without the critical instance", func() bool {
		return readOrEmpty(outA) == "1: 10.0.0.1" && lines() == 2
	})

	putKV(t, srv, "gen", "2")
	servertest.Eventually(t, "both templates rewritten by one change", func() bool {
		return readOrEmpty(outA) == "2: 10.0.0.1" && readOrEmpty(outB) == "2:ok"
	})
	putKV(t, srv, "b", "bad")
	servertest.Eventually(t, "the check's refusal logged", func() bool { return strings.Contains(log.String(), "check refused the new file") })
	if got := readOrEmpty(outB); got != "2:ok" {
		t.Fatalf("a file refused by its check replaced the old one: %q", got)
	}
	if got := readOrEmpty(ran); got != "pass\npass\npass\n" {
		t.Fatalf("command runs %q: want one per pass that wrote a file (3)", got)
	}
}

// The render binary with -once and a key that never appears exits 1 after
// -once-timeout, listing the key and the template, and writes nothing.
func TestRenderProcessOnceMissingKey(t *testing.T) {
	srv := servertest.Start(t)
	bin := buildTool(t, "render")
	dir := t.TempDir()
	tmpl := writeFile(t, dir, "in.ctmpl", `{{ key "never/there" }}`)
	out := filepath.Join(dir, "out")
	cmd, log := startRender(t, bin, "-consul-addr", srv.HTTPAddr(), "-once", "-once-timeout", "500ms", "-template", tmpl+":"+out)
	if code := waitExit(t, cmd, log); code != 1 {
		t.Fatalf("render -once exited %d, want 1\n%s", code, log.String())
	}
	if !strings.Contains(log.String(), tmpl+" needs kv.block(never/there)") {
		t.Fatalf("the error does not list the missing key: %s", log.String())
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a template with missing data was written")
	}
}
