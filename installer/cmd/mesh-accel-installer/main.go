// Command mesh-accel-installer is mesh-accel's node installer, run by the
// DaemonSet in manifests/: see package installer, or run it with --help.
package main

import (
	"os"

	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/earlysignal"
)

func main() {
	// SIGTERM is caught from the program's first milliseconds on
	// (package earlysignal): the kubelet may stop the installer while it
	// starts, and it must then still give the CNI config back.
	ctx, stop := earlysignal.Context()
	code := installer.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
