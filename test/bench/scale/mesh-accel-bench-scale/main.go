// Command mesh-accel-bench-scale runs the capacity benchmark of mesh-accel
// (root, BPF, cgroup v2 and nsenter needed; see package scale):
// BENCH_SCALE_PODS=1,10,50,100,250,1000 sets the pod steps (those above 250
// only add pods, the ADD curve), BENCH_SCALE_CONNS=0,1000,...,max the
// connection steps at the largest pod step up to 250 ("max": the maps'
// capacity), BENCH_SCALE_MAP_SIZE the maps' size of the state it creates
// (default: the engine's), BENCH_SCALE_PROBES the new connections timed per
// step (600), BENCH_SCALE_JSON=FILE writes the figures as JSON and the
// curves beside it (FILE without .json, plus -add.svg, -pods.svg,
// -conns.svg, -memory.svg, -connect.svg). BENCH_SCALE_PLUGIN and
// BENCH_SCALE_INSTALLER name the binaries (default: mesh-accel and
// mesh-accel-installer beside this program). "mesh-accel-bench-scale report
// FILE.json" prints the tables of a run's JSON again and redraws its charts.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/mesh-accel/mesh-accel/test/bench/scale"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

func main() {
	sim.RoleMain()
	if len(os.Args) == 2 && os.Args[1] == scale.HolderArg {
		scale.HolderMain()
	}
	if len(os.Args) == 3 && os.Args[1] == "report" {
		// Print the tables of a run's JSON again and redraw its charts.
		res, err := scale.ReadJSON(os.Args[2])
		if err == nil {
			err = report(res, os.Args[2])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "mesh-accel-bench-scale:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mesh-accel-bench-scale:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, out, err := config()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := scale.Run(ctx, cfg)
	if res == nil {
		return err
	}
	if werr := report(res, out); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

// report prints the result and writes its JSON and charts to out, if set.
func report(res *scale.Result, out string) error {
	fmt.Printf("%s, %d CPUs, load average %s at the start, %s at the end\n\n", res.Kernel, res.CPUs, res.LoadStart, res.LoadEnd)
	fmt.Print(res.Table(), "\n", res.Edges(), "\n", res.FloorsTable())
	if out == "" {
		return nil
	}
	if err := res.WriteJSON(out); err != nil {
		return err
	}
	charts, err := res.WriteCharts(out)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "wrote", out, charts)
	return nil
}

// config reads the BENCH_SCALE_* variables.
func config() (scale.Config, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return scale.Config{}, "", err
	}
	cfg := scale.Config{
		Plugin:    envOr("BENCH_SCALE_PLUGIN", filepath.Join(filepath.Dir(exe), "mesh-accel")),
		Installer: envOr("BENCH_SCALE_INSTALLER", filepath.Join(filepath.Dir(exe), "mesh-accel-installer")),
		Log:       func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
	}
	if v := os.Getenv("BENCH_SCALE_PODS"); v != "" {
		if cfg.Pods, err = scale.ParseCounts("BENCH_SCALE_PODS", v, false); err != nil {
			return cfg, "", err
		}
	}
	if v := os.Getenv("BENCH_SCALE_CONNS"); v != "" {
		if cfg.Conns, err = scale.ParseCounts("BENCH_SCALE_CONNS", v, true); err != nil {
			return cfg, "", err
		}
	}
	for name, dst := range map[string]*int{"BENCH_SCALE_PROBES": &cfg.Probes, "BENCH_SCALE_MAP_SIZE": nil} {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return cfg, "", fmt.Errorf("%s=%q: want a positive count", name, v)
		}
		if dst != nil {
			*dst = int(n)
		} else {
			cfg.MapSize = uint32(n)
		}
	}
	return cfg, os.Getenv("BENCH_SCALE_JSON"), nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
