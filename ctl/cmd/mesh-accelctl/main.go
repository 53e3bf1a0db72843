// Command mesh-accelctl inspects and controls mesh-accel on a node: see
// package ctl, or run mesh-accelctl --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mesh-accel/mesh-accel/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := ctl.Main(ctx, os.Args[1:], ctl.Deps{})
	stop()
	os.Exit(code)
}
