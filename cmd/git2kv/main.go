// Command git2kv syncs git branches into KV; it is the same command as
// kvx git2kv.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvxproject/kvx/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cli.Version = version
	code := cli.Main(ctx, "git2kv", os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
