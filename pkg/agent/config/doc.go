// Package config owns the service and check definitions a kvx agent reads
// from its -config-dir: JSON files in Consul's agent configuration format
// (`{"service": {...}}`, `{"services": [...]}`, `{"check": {...}}`,
// `{"checks": [...]}`, a service's own `check`/`checks`), parsed into typed
// definitions and validated as Consul validates them.
//
// Keys are matched as Consul matches them: case-insensitively against the
// snake_case name, plus Consul's CamelCase aliases (ServiceID, ScriptArgs,
// TLSSkipVerify, DeregisterCriticalServiceAfter). kvx goes one step further
// and accepts the CamelCase spelling of every field (SuccessBeforePassing,
// EnableTagOverride, ...), which Consul's config files refuse: the same
// names the HTTP API uses. Durations are Go duration strings ("10s").
// Unknown keys inside a service or check are errors ("invalid config key",
// as Consul); Consul fields kvx cannot honour (docker, alias, h2ping, udp,
// connect, ...) are errors too, never silently dropped. Other top-level keys
// (Consul's agent settings such as "datacenter") are reported as warnings and
// ignored: a kvx agent takes those from its flags.
//
// LoadDir reads *.json in file-name order; *.hcl files are an error (kvx does
// not parse HCL, and skipping them would silently drop services); any other
// file and every subdirectory is skipped with a warning, as Consul skips
// files of unknown extensions. Every error names the file and the field,
// e.g. `web.json: service.check.interval: "10x" is not a duration`.
//
// This package only parses and validates. It must not run checks (package
// checks does), talk to a server or the catalog, import other kvx packages,
// or log: warnings are returned to the caller.
package config
