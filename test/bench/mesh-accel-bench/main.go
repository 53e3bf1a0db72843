//go:build meshbench

// Command mesh-accel-bench runs the mesh-accel benchmark on a simulated node
// (root, BPF and cgroup v2 needed). BENCH_SECONDS sets the length of each
// measurement (default 2), BENCH_ROUNDS the interleaved rounds (default 3),
// BENCH_MODES=a,b picks the modes (bench.AllModes; the sidecar mode is
// always measured). BENCH_JSON=FILE also writes the figures as JSON, and a bar chart of the
// ratios to the sidecar mode beside it (FILE without .json, plus .svg). BENCH_PLUGIN names the
// mesh-accel CNI plugin binary to time (default: mesh-accel beside this
// program; "-" or a missing binary skips the timing). BENCH_ONLY=REGEXP runs only the
// measurements whose name matches (the capture's cost only when it matches "capture";
// "fortio" picks fortio's runs, "fortio 1000/s" Istio's fixed rate alone). When fortio
// runs, the benchmark builds it (`go build fortio.org/fortio`, a tool of go.mod), so it
// must run inside the repository with the go command in PATH.
// BENCH_PROFILE=REGEXP samples every CPU with perf while the measurements it names run
// ("fortio 1000/s" for Istio's fixed rate) and reports where the time went per request:
// Envoy, the apps, our BPF programs, sockmap, netfilter, the TCP/IP stack, wake-ups,
// syscalls (test/bench/profile.go).
// BENCH_SIDECAR=envoy|go picks the pods' sidecar: Envoy as istiod configures it,
// with mutual TLS between the sidecars (the default), or the simulator's Go relay,
// for comparison; the table and the JSON say which ran.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
	modes, err := bench.ParseModes(os.Getenv("BENCH_MODES"))
	if err != nil {
		return err
	}
	if os.Getenv("BENCH_MODES") == "" {
		modes = nil
	}
	sidecar, err := bench.ParseSidecar(os.Getenv("BENCH_SIDECAR"))
	if err != nil {
		return fmt.Errorf("BENCH_SIDECAR: %w", err)
	}
	var only *regexp.Regexp
	if v := os.Getenv("BENCH_ONLY"); v != "" {
		if only, err = regexp.Compile(v); err != nil {
			return fmt.Errorf("BENCH_ONLY=%q: %w", v, err)
		}
	}
	var profile *regexp.Regexp
	if v := os.Getenv("BENCH_PROFILE"); v != "" {
		if profile, err = regexp.Compile(v); err != nil {
			return fmt.Errorf("BENCH_PROFILE=%q: %w", v, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, bench.Config{
		Duration: time.Duration(secs * float64(time.Second)),
		Rounds:   int(rounds),
		Log:      os.Stderr,
		Plugin:   pluginPath(),
		Modes:    modes,
		Only:     only,
		Sidecar:  sidecar,
		Profile:  profile,
	})
	if err != nil {
		return err
	}
	if err := bench.WriteTable(os.Stdout, res); err != nil {
		return err
	}
	if path := os.Getenv("BENCH_JSON"); path != "" {
		if err := bench.WriteJSON(path, res); err != nil {
			return err
		}
		return bench.WriteChart(strings.TrimSuffix(path, ".json")+".svg", res)
	}
	return nil
}

// pluginPath is the CNI plugin binary to time, or "" to skip.
func pluginPath() string {
	p := os.Getenv("BENCH_PLUGIN")
	if p == "-" {
		return ""
	}
	if p == "" {
		self, err := os.Executable()
		if err != nil {
			return ""
		}
		p = filepath.Join(filepath.Dir(self), "mesh-accel")
	}
	if _, err := os.Stat(p); err != nil {
		fmt.Fprintf(os.Stderr, "mesh-accel-bench: no CNI plugin timing (%v); build bin/mesh-accel or set BENCH_PLUGIN\n", err)
		return ""
	}
	return p
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
