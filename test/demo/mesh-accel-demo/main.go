//go:build meshbench

// Command mesh-accel-demo runs mesh-accel's demo on this machine (root,
// Linux 6.1 or later, cgroup v2, Envoy): a simulated node with meshed pods
// created through a real CNI chain, each with an Envoy sidecar configured
// as istiod configures one (mutual TLS between the sidecars), Istio's
// measurement without and with each opt-in, and what is accelerated
// (package demo). Run it from the repository: it builds fortio.
// DEMO_SECONDS sets each fortio run (default 4; 5 rounds of 4 columns).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/mesh-accel/mesh-accel/test/demo"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

func main() {
	sim.RoleMain()
	secs := 4.0
	if v := os.Getenv("DEMO_SECONDS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			fmt.Fprintf(os.Stderr, "mesh-accel-demo: DEMO_SECONDS=%q: want a positive number\n", v)
			os.Exit(2)
		}
		secs = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := demo.Run(ctx, demo.Config{Duration: time.Duration(secs * float64(time.Second)), Out: os.Stdout})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh-accel-demo:", err)
		os.Exit(1)
	}
}
