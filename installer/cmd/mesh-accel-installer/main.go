// Command mesh-accel-installer is mesh-accel's node installer, run by the
// DaemonSet in manifests/: see package installer, or run it with --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mesh-accel/mesh-accel/installer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := installer.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
