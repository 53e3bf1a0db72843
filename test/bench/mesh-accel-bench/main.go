// Command mesh-accel-bench runs the mesh-accel benchmark on a simulated node
// (root, BPF and cgroup v2 needed). BENCH_SECONDS sets the length of each
// measurement (default 2), BENCH_ROUNDS the interleaved rounds (default 3),
// BENCH_JSON=FILE also writes the figures as JSON.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/mesh-accel/mesh-accel/test/bench"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

func main() {
	sim.RoleMain()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mesh-accel-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	secs, err := envFloat("BENCH_SECONDS", 2)
	if err != nil {
		return err
	}
	rounds, err := envFloat("BENCH_ROUNDS", 3)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, bench.Config{
		Duration: time.Duration(secs * float64(time.Second)),
		Rounds:   int(rounds),
		Log:      os.Stderr,
	})
	if err != nil {
		return err
	}
	if err := bench.WriteTable(os.Stdout, res); err != nil {
		return err
	}
	if path := os.Getenv("BENCH_JSON"); path != "" {
		return bench.WriteJSON(path, res)
	}
	return nil
}

func envFloat(name string, def float64) (float64, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive number", name, v)
	}
	return f, nil
}
