package render

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
)

// Config is consul-template's configuration file, the blocks render takes:
// consul, template, wait, exec, log_level, kill_signal, reload_signal,
// max_stale, and render's own (check per template, once_timeout,
// max_connections, missing_log).
type Config struct {
	ConsulAddr, ConsulToken string
	ConsulSSL               *SSLConfig // consul { ssl { ... } }
	LogLevel                string
	KillSignal              string
	ReloadSignal            string
	MaxStale                time.Duration
	Wait                    *Wait
	Exec                    *ExecConfig
	Templates               []TemplateConfig
	OnceTimeout             time.Duration
	MaxConnections          int
	MissingLog              time.Duration
	ErrOnFailedLookup       bool
}

// SSLConfig is consul-template's consul.ssl block: HTTPS to the server.
type SSLConfig struct {
	Enabled, Verify *bool // nil: not given
	Cert, Key       string
	CACert, CAPath  string
	ServerName      string
}

// ExecConfig is the exec block: the child render supervises.
type ExecConfig struct {
	Command      string
	ReloadSignal string // "" restarts the child on change
	KillSignal   string // default SIGTERM
	KillTimeout  time.Duration
}

// TemplateConfig is one template block (or one -template flag).
type TemplateConfig struct {
	Source, Contents, Destination string
	Command                       string
	CommandTimeout                time.Duration
	Check                         string
	Perms                         os.FileMode
	User, Group                   string
	Backup                        bool
	LeftDelim, RightDelim         string
	ErrMissingKey                 bool
	SandboxPath                   string
	FunctionDenylist              []string
	Wait                          *Wait
}

// ParseTemplateFlag reads -template SRC:DST[:COMMAND], as consul-template
// splits it (the command may itself hold colons).
func ParseTemplateFlag(s string) (TemplateConfig, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return TemplateConfig{}, fmt.Errorf("-template %q: want SOURCE:DESTINATION[:COMMAND]", s)
	}
	tc := TemplateConfig{Source: parts[0], Destination: parts[1]}
	if len(parts) == 3 {
		tc.Command = parts[2]
	}
	return tc, nil
}

// ParseWait reads MIN[:MAX] ("5s:30s"); a lone MIN gets MAX = 4×MIN, as
// consul-template does.
func ParseWait(s string) (Wait, error) {
	lo, hi, two := strings.Cut(s, ":")
	min, err := time.ParseDuration(strings.TrimSpace(lo))
	if err != nil || min < 0 {
		return Wait{}, fmt.Errorf("wait %q: want MIN[:MAX] durations (5s:30s)", s)
	}
	max := 4 * min
	if two {
		if max, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil || max < min {
			return Wait{}, fmt.Errorf("wait %q: MAX must be a duration no shorter than MIN", s)
		}
	}
	return Wait{Min: min, Max: max}, nil
}

// LoadConfig reads an HCL (or JSON) configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, string(b))
}

// ParseConfig parses a configuration file's text; errors name the file and
// the key (or the line and column of a syntax error).
func ParseConfig(name, text string) (*Config, error) {
	var raw map[string]any
	if err := hcl.Decode(&raw, text); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c := &Config{}
	r := reader{file: name}
	r.object("", raw, map[string]func(string, any){
		"consul": func(p string, v any) {
			r.block(p, v, map[string]func(string, any){
				"address": func(p string, v any) { c.ConsulAddr = r.str(p, v) },
				"token":   func(p string, v any) { c.ConsulToken = r.str(p, v) },
				"ssl": func(p string, v any) {
					ssl := &SSLConfig{}
					r.block(p, v, map[string]func(string, any){
						"enabled":     func(p string, v any) { b := r.boolean(p, v); ssl.Enabled = &b },
						"verify":      func(p string, v any) { b := r.boolean(p, v); ssl.Verify = &b },
						"cert":        func(p string, v any) { ssl.Cert = r.str(p, v) },
						"key":         func(p string, v any) { ssl.Key = r.str(p, v) },
						"ca_cert":     func(p string, v any) { ssl.CACert = r.str(p, v) },
						"ca_path":     func(p string, v any) { ssl.CAPath = r.str(p, v) },
						"server_name": func(p string, v any) { ssl.ServerName = r.str(p, v) },
					})
					c.ConsulSSL = ssl
				},
			})
		},
		"log_level":            func(p string, v any) { c.LogLevel = r.str(p, v) },
		"kill_signal":          func(p string, v any) { c.KillSignal = r.str(p, v) },
		"reload_signal":        func(p string, v any) { c.ReloadSignal = r.str(p, v) },
		"max_stale":            func(p string, v any) { c.MaxStale = r.dur(p, v) },
		"once_timeout":         func(p string, v any) { c.OnceTimeout = r.dur(p, v) },
		"missing_log":          func(p string, v any) { c.MissingLog = r.dur(p, v) },
		"max_connections":      func(p string, v any) { c.MaxConnections = int(r.num(p, v)) },
		"err_on_failed_lookup": func(p string, v any) { c.ErrOnFailedLookup = r.boolean(p, v) },
		"wait":                 func(p string, v any) { c.Wait = r.wait(p, v) },
		"exec": func(p string, v any) {
			e := &ExecConfig{}
			r.block(p, v, map[string]func(string, any){
				"command":       func(p string, v any) { e.Command = r.command(p, v) },
				"reload_signal": func(p string, v any) { e.ReloadSignal = r.str(p, v) },
				"kill_signal":   func(p string, v any) { e.KillSignal = r.str(p, v) },
				"kill_timeout":  func(p string, v any) { e.KillTimeout = r.dur(p, v) },
			})
			c.Exec = e
		},
		"template": func(p string, v any) {
			for i, blk := range r.blocks(v) {
				t := TemplateConfig{}
				bp := fmt.Sprintf("%s[%d]", p, i)
				r.object(bp, blk, map[string]func(string, any){
					"source":                func(p string, v any) { t.Source = r.str(p, v) },
					"contents":              func(p string, v any) { t.Contents = r.str(p, v) },
					"destination":           func(p string, v any) { t.Destination = r.str(p, v) },
					"command":               func(p string, v any) { t.Command = r.command(p, v) },
					"command_timeout":       func(p string, v any) { t.CommandTimeout = r.dur(p, v) },
					"check":                 func(p string, v any) { t.Check = r.str(p, v) },
					"perms":                 func(p string, v any) { t.Perms = r.perms(p, v) },
					"user":                  func(p string, v any) { t.User = r.str(p, v) },
					"group":                 func(p string, v any) { t.Group = r.str(p, v) },
					"backup":                func(p string, v any) { t.Backup = r.boolean(p, v) },
					"left_delimiter":        func(p string, v any) { t.LeftDelim = r.str(p, v) },
					"right_delimiter":       func(p string, v any) { t.RightDelim = r.str(p, v) },
					"error_on_missing_key":  func(p string, v any) { t.ErrMissingKey = r.boolean(p, v) },
					"err_missing_key":       func(p string, v any) { t.ErrMissingKey = r.boolean(p, v) },
					"sandbox_path":          func(p string, v any) { t.SandboxPath = r.str(p, v) },
					"function_denylist":     func(p string, v any) { t.FunctionDenylist = r.strs(p, v) },
					"function_blacklist":    func(p string, v any) { t.FunctionDenylist = r.strs(p, v) },
					"create_dest_dirs":      func(p string, v any) { r.boolean(p, v) },
					"wait":                  func(p string, v any) { t.Wait = r.wait(p, v) },
					"source_is_ctmpl":       func(p string, v any) { r.boolean(p, v) },
					"exec":                  func(p string, v any) { r.fail(p, "per-template exec is not supported; use the top-level exec block") },
					"template_error_fatal":  func(p string, v any) { r.boolean(p, v) },
					"error_fatal":           func(p string, v any) { r.boolean(p, v) },
					"uid":                   func(p string, v any) { t.User = strconv.FormatInt(r.num(p, v), 10) },
					"gid":                   func(p string, v any) { t.Group = strconv.FormatInt(r.num(p, v), 10) },
					"command_run_on_change": func(p string, v any) { r.boolean(p, v) },
				})
				if t.Source != "" && t.Contents != "" {
					r.fail(bp, "cannot specify both 'source' and 'contents'")
				}
				if t.Source == "" && t.Contents == "" {
					r.fail(bp, "must specify exactly one of 'source' or 'contents'")
				}
				if t.Destination == "" {
					r.fail(bp, "destination is required")
				}
				c.Templates = append(c.Templates, t)
			}
		},
	})
	if r.err != nil {
		return nil, r.err
	}
	return c, nil
}

// reader walks decoded HCL, keeping the first error, which names the file
// and the key path.
type reader struct {
	file string
	err  error
}

func (r *reader) fail(path, format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %s: %s", r.file, path, fmt.Sprintf(format, args...))
	}
}

func keyPath(p, k string) string {
	if p == "" {
		return k
	}
	return p + "." + k
}

func (r *reader) object(path string, v any, keys map[string]func(string, any)) {
	m, ok := v.(map[string]any)
	if !ok {
		r.fail(path, "want a block")
		return
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		f, ok := keys[k]
		if !ok {
			r.fail(keyPath(path, k), "unknown key")
			continue
		}
		f(keyPath(path, k), m[k])
	}
}

// blocks: HCL decodes a block as a list of objects.
func (r *reader) blocks(v any) []any {
	switch l := v.(type) {
	case []map[string]any:
		out := make([]any, len(l))
		for i, m := range l {
			out[i] = m
		}
		return out
	case []any:
		return l
	case map[string]any:
		return []any{l}
	}
	return []any{v}
}

func (r *reader) block(path string, v any, keys map[string]func(string, any)) {
	for _, b := range r.blocks(v) {
		r.object(path, b, keys)
	}
}

func (r *reader) str(path string, v any) string {
	s, ok := v.(string)
	if !ok {
		r.fail(path, "want a string, got %v", v)
	}
	return s
}

func (r *reader) strs(path string, v any) []string {
	l, ok := v.([]any)
	if !ok {
		r.fail(path, "want a list of strings")
		return nil
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, r.str(path, e))
	}
	return out
}

// command is a string, or a list of arguments (run without a shell in
// consul-template; joined here with each argument quoted).
func (r *reader) command(path string, v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	args := r.strs(path, v)
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}

func (r *reader) num(path string, v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n)
	case string:
		i, err := strconv.ParseInt(n, 0, 64)
		if err != nil {
			r.fail(path, "want a number, got %q", n)
		}
		return i
	}
	r.fail(path, "want a number, got %v", v)
	return 0
}

func (r *reader) boolean(path string, v any) bool {
	b, ok := v.(bool)
	if !ok {
		r.fail(path, "want true or false, got %v", v)
	}
	return b
}

func (r *reader) dur(path string, v any) time.Duration {
	switch d := v.(type) {
	case string:
		out, err := time.ParseDuration(d)
		if err != nil {
			r.fail(path, "%q is not a duration (10s, 5m)", d)
		}
		return out
	case int, int64, float64:
		return time.Duration(r.num(path, v)) * time.Second
	}
	r.fail(path, "want a duration, got %v", v)
	return 0
}

// perms: 0600 (an HCL number, octal as written) or "0600".
func (r *reader) perms(path string, v any) os.FileMode {
	if s, ok := v.(string); ok {
		n, err := strconv.ParseUint(s, 8, 32)
		if err != nil {
			r.fail(path, "%q is not octal permissions", s)
		}
		return os.FileMode(n)
	}
	return os.FileMode(r.num(path, v))
}

func (r *reader) wait(path string, v any) *Wait {
	if s, ok := v.(string); ok {
		w, err := ParseWait(s)
		if err != nil {
			r.fail(path, "%v", err)
		}
		return &w
	}
	w := &Wait{}
	r.block(path, v, map[string]func(string, any){
		"min": func(p string, v any) { w.Min = r.dur(p, v) },
		"max": func(p string, v any) { w.Max = r.dur(p, v) },
	})
	if w.Max == 0 {
		w.Max = 4 * w.Min
	}
	return w
}
