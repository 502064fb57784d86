// Command hostsgen writes the healthy catalog as a hosts file for dnsmasq;
// it is `kvx hostsgen`, with a main of its own.
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
	code := cli.Main(ctx, "hostsgen", os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
