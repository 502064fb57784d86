// Package render owns the template language of kvx render: consul-template's
// functions, with the same names, arguments and output, so existing .ctmpl
// files render unchanged. Functions live in files by family (funcs_*.go);
// the data functions and their blocking queries come apart from the pure
// helpers. It must not write files itself (pkg/atomicfile does) nor build
// Consul clients (pkg/client does).
package render
