package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/hostsgen"
	"github.com/kvxproject/kvx/pkg/render"
)

type hostsgenOptions struct {
	common
	output, state, command, wait, maxShrink, lock string
	domain                                        string
	nodes, header, force, watch, stale            bool
	services, tags, exclude, nodeMeta             []string
	commandTimeout                                time.Duration
}

func newHostsgenCmd() *cobra.Command {
	o := &hostsgenOptions{}
	cmd := &cobra.Command{
		Use:   "hostsgen",
		Short: "Write the healthy catalog as a hosts file for dnsmasq's --addn-hosts",
		Long: `hostsgen writes "<addr> <svc>.service.<domain>" and "<addr> <tag>.<svc>.service.<domain>"
for every instance whose checks all pass (with -nodes, "<addr> <node>.node.<domain>"
too), sorted, to a file (-o, atomically, only when it changed, then -e) or to
stdout, so that "hostsgen | kvx in -k hosts -f -" publishes it to every node.
Names that are not DNS labels and addresses that are not IPs are skipped with
a warning. A file that lost more than -max-shrink of the last one's entries is
refused (exit 3) unless -force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runHostsgen(cmd, o) },
	}
	f := cmd.Flags()
	o.common.register(f, 0)
	f.StringVarP(&o.output, "output", "o", "", `hosts file to write ("" or "-": stdout)`)
	f.StringVar(&o.domain, "domain", "consul", "domain of the names (<svc>.service.<domain>)")
	f.BoolVar(&o.nodes, "nodes", false, "also <addr> <node>.node.<domain> for the nodes of the listed instances")
	f.StringArrayVar(&o.services, "service", nil, "only this service (repeatable)")
	f.StringArrayVar(&o.tags, "tag", nil, "only instances with this tag (repeatable: any of them)")
	f.StringArrayVar(&o.exclude, "exclude-service", nil, "never this service (repeatable)")
	f.StringArrayVar(&o.nodeMeta, "node-meta", nil, "only instances on nodes with this meta, key:value (repeatable: all of them)")
	f.BoolVar(&o.header, "header", false, "start the file with a comment naming when it was generated (ignored when comparing)")
	f.StringVar(&o.maxShrink, "max-shrink", "50%", "refuse (exit 3) a file that lost more than this share of the last one's entries")
	f.BoolVar(&o.force, "force", false, "publish even a file the -max-shrink guard refuses")
	f.StringVar(&o.state, "state", "", "stdout mode: file remembering the last published entries, for -max-shrink (default: a file per configuration under the user cache dir)")
	f.StringVarP(&o.command, "exec", "e", "", "command (sh -c) to run after the file changed, e.g. 'pkill -HUP dnsmasq'")
	f.DurationVar(&o.commandTimeout, "exec-timeout", time.Minute, "kill the -e command after this")
	f.BoolVar(&o.watch, "watch", false, "keep running: generate again whenever the catalog changes (needs -o)")
	f.StringVar(&o.wait, "wait", "2s:10s", "with -watch: MIN[:MAX] quiet time after a change before generating (a flapping check rewrites the file at most every MAX)")
	f.BoolVar(&o.stale, "stale", true, "read from any server (false: from the leader)")
	f.StringVar(&o.lock, "lock", "", "publish only while holding the lock on this prefix (consul lock's layout: PREFIX/.lock), so that of several hostsgen instances exactly one publishes")
	return cmd
}

// parseShare reads "50%", "50" (percent) or "0.5".
func parseShare(flag, s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(t, "%"), 64)
	if err == nil && (pct || v > 1) {
		v /= 100
	}
	if err != nil || v < 0 || v > 1 {
		return 0, fmt.Errorf("%s %q: want a share from 0%% to 100%% (e.g. 50%%)", flag, s)
	}
	return v, nil
}

func (o *hostsgenOptions) generation() (hostsgen.Options, error) {
	g := hostsgen.Options{Domain: o.domain, Nodes: o.nodes, Services: o.services, Tags: o.tags, ExcludeServices: o.exclude}
	for _, l := range strings.Split(strings.Trim(o.domain, "."), ".") {
		if !hostsgen.ValidLabel(l) {
			return g, fmt.Errorf("-domain %q: not a domain name", o.domain)
		}
	}
	for _, kv := range o.nodeMeta {
		k, v, ok := strings.Cut(kv, ":")
		if !ok || k == "" {
			return g, fmt.Errorf("-node-meta %q: want key:value", kv)
		}
		if g.NodeMeta == nil {
			g.NodeMeta = map[string]string{}
		}
		g.NodeMeta[k] = v
	}
	return g, nil
}

// defaultState is stdout mode's state file: one per server address,
// datacenter and selection, so two pipelines never share one.
func (o *hostsgenOptions) defaultState() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	addr := o.httpAddr
	if addr == "" {
		addr = os.Getenv(consulapi.HTTPAddrEnvName)
	}
	h := sha256.Sum256([]byte(strings.Join([]string{addr, o.datacenter, o.domain, strconv.FormatBool(o.nodes),
		strings.Join(o.services, ","), strings.Join(o.tags, ","), strings.Join(o.exclude, ","), strings.Join(o.nodeMeta, ",")}, "\x00")))
	return filepath.Join(dir, "kvx", "hostsgen-"+hex.EncodeToString(h[:6])+".json"), nil
}

func runHostsgen(cmd *cobra.Command, o *hostsgenOptions) error {
	if o.output == "-" {
		o.output = ""
	}
	if err := absFile(&o.output); err != nil {
		return usageError{err}
	}
	gen, err := o.generation()
	if err != nil {
		return usageError{err}
	}
	share, err := parseShare("-max-shrink", o.maxShrink)
	if err != nil {
		return usageError{err}
	}
	var wait render.Wait
	switch {
	case o.watch && o.output == "":
		return usageError{errors.New("-watch writes a file: give -o FILE (and -e to publish it, e.g. -e 'kvx in -k hosts -f FILE')")}
	case !o.watch && cmd.Flags().Changed("wait"):
		return usageError{errors.New("-wait is for -watch")}
	case o.watch:
		if wait, err = render.ParseWait(o.wait); err != nil {
			return usageError{fmt.Errorf("-%w", err)}
		}
	}
	if o.state != "" && o.output != "" {
		return usageError{errors.New("-state is for stdout mode: with -o the output file itself is the last published file")}
	}
	logger, err := newLogger(cmd.ErrOrStderr(), o.logLevel, o.logJSON)
	if err != nil {
		return err
	}
	api, err := client.New(client.Options{Address: o.httpAddr, Token: o.token, Datacenter: o.datacenter, TLS: o.tls.options()})
	if err != nil {
		return usageError{err}
	}
	pub := &hostsgen.Publisher{Output: o.output, Writer: cmd.OutOrStdout(), State: o.state, MaxShrink: share, Force: o.force}
	if o.output == "" && pub.State == "" {
		if pub.State, err = o.defaultState(); err != nil {
			logger.Warn("hostsgen: no state file for the shrink guard (give -state)", "err", err)
		}
	}
	if o.lock == "" {
		return o.publish(cmd.Context(), api, gen, wait, pub, logger)
	}
	return whileLeader(cmd.Context(), api, o.lock, "kvx hostsgen", logger, func(ctx context.Context) error {
		return o.publish(ctx, api, gen, wait, pub, logger)
	})
}

// publish generates and publishes the hosts file, once or (-watch) again
// on every catalog change until ctx ends.
func (o *hostsgenOptions) publish(ctx context.Context, api *consulapi.Client, gen hostsgen.Options, wait render.Wait, pub *hostsgen.Publisher, logger *slog.Logger) error {
	once := func() error {
		instances, err := hostsgen.Fetch(ctx, api, gen, o.stale)
		if err != nil {
			return fmt.Errorf("read the catalog: %w", err)
		}
		g := gen
		if o.header {
			g.Header = time.Now()
		}
		res := hostsgen.Generate(instances, g)
		for _, r := range res.Rejected {
			logger.Warn("hostsgen: entry skipped", "node", r.Node, "service", r.Service, "id", r.ID, "reason", r.Reason)
		}
		p, err := pub.Publish(res)
		var shrink *hostsgen.ShrinkError
		if errors.As(err, &shrink) {
			return fmt.Errorf("%w: %w", errRefused, err)
		}
		if err != nil {
			return err
		}
		if !p.Changed {
			logger.Debug("hostsgen: unchanged", "entries", res.Entries)
			return nil
		}
		logger.Info("hostsgen: published", "entries", res.Entries, "last", p.Last, "instances", res.Instances, "skipped", len(res.Rejected), "file", o.output)
		if o.command != "" {
			out, err := runHostsgenCommand(ctx, o.command, o.commandTimeout, o.output)
			if err != nil {
				return fmt.Errorf("-e %q: %w\n%s", o.command, err, out)
			}
			logger.Info("hostsgen: command ran", "command", o.command, "output", strings.TrimSpace(string(out)))
		}
		return nil
	}
	if !o.watch {
		return once()
	}
	changed := hostsgen.Watch(ctx, api, o.stale, logger)
	for {
		if err := once(); err != nil {
			logger.Error("hostsgen: generation failed; trying again on the next change", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		if !settle(ctx, changed, wait) {
			return nil
		}
	}
}

// settle waits until no change came for w.Min, or w.Max since the first
// one; false when ctx ended.
func settle(ctx context.Context, changed <-chan struct{}, w render.Wait) bool {
	if w.Min <= 0 {
		return ctx.Err() == nil
	}
	limit := time.NewTimer(max(w.Max, w.Min))
	defer limit.Stop()
	for {
		quiet := time.NewTimer(w.Min)
		select {
		case <-ctx.Done():
			quiet.Stop()
			return false
		case <-quiet.C:
			return true
		case <-limit.C:
			quiet.Stop()
			return true
		case <-changed:
			quiet.Stop()
		}
	}
}

// runHostsgenCommand runs -e with sh -c in its own process group, killed
// whole at the timeout, with KVX_FILE set; it returns the output.
func runHostsgenCommand(ctx context.Context, command string, timeout time.Duration, file string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = append(os.Environ(), "KVX_FILE="+file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 500 * time.Millisecond
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	b := out.Bytes()
	if len(b) > 4096 {
		b = b[:4096]
	}
	return b, err
}
