package render

import (
	"context"
	"errors"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
)

// EnvOptions shape envconsul mode: the keys under Prefix become the child's
// environment.
type EnvOptions struct {
	Prefix   string
	Upcase   bool // names in upper case
	Sanitize bool // characters other than [a-zA-Z0-9_] become _
	NoPrefix bool // names without the prefix (envconsul's default, true)
}

var envInvalid = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// Environ is the environment envconsul would give the child for pairs (the
// answer of a kv.list on the prefix): each key relative to the prefix, with
// the prefix path (sanitized) in front unless NoPrefix, then sanitized and
// upper-cased as asked; it overlays base (KEY=VALUE entries).
func (o EnvOptions) Environ(base []string, pairs []*KeyPair) []string {
	env := map[string]string{}
	for _, e := range base {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	for _, p := range pairs {
		key := p.Key
		if strings.TrimSpace(key) == "" {
			continue
		}
		if !o.NoPrefix {
			key = envInvalid.ReplaceAllString(o.Prefix, "_") + "_" + key
		}
		if o.Sanitize {
			key = envInvalid.ReplaceAllString(key, "_")
		}
		if o.Upcase {
			key = strings.ToUpper(key)
		}
		env[key] = p.Value
	}
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// RunEnv is envconsul mode: it waits for the prefix's keys, starts child
// with them in its environment, and on each change that alters that
// environment sends the child its reload signal (or restarts it). It
// returns when the child exits on its own (its code is child.ExitCode())
// or ctx ends (the child stopped).
func RunEnv(ctx context.Context, src Source, o EnvOptions, child *Child, wo WatchOptions) error {
	brain := NewBrain()
	w := NewWatcher(src, brain, wo)
	defer w.Stop()
	d := Dep{Kind: KindList, Path: strings.TrimPrefix(o.Prefix, "/")}
	w.Watch(ctx, []Dep{d})
	var current []string
	var done <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			child.Stop()
			return ctx.Err()
		case <-done:
			return nil
		case err := <-w.Errors():
			if wo.Logger != nil {
				wo.Logger.Warn("fetch failed", "err", err)
			}
			continue
		case <-w.Changed():
		}
		v, ok := brain.Recall(d)
		if !ok {
			continue
		}
		env := o.Environ(os.Environ(), v.([]*KeyPair))
		if slices.Equal(env, current) {
			continue
		}
		current = env
		child.Env = func() []string { return env }
		if done == nil {
			if err := child.Start(); err != nil {
				return err
			}
			done = child.Done()
			continue
		}
		if err := child.Reload(); err != nil {
			return errors.Join(errors.New("reload child"), err)
		}
	}
}
