// Package cli holds every kvx command's cobra code, once: the kvx tree, and
// the tools that also have a main of their own (git2kv, render, hostsgen)
// mounted both under kvx and by their thin main through Main.
//
// It owns flags, environment, exit codes and output; the work itself is done
// by the pkg/ packages. It must not call os.Exit: only the mains do.
package cli
