// Package scale is the capacity benchmark of mesh-accel (`make
// bench-scale`): how the costs of a node grow with its pods and
// connections, up to the capacity of the node state's maps.
//
// Pods are cgroups attached by the built plugin binary, as a runtime runs
// it (ADD and DEL timed, fork and exec included), against node state the
// benchmark creates with [bpf.OpenNode] and that the real installer binary
// serves (its /metrics scraped, its memory read). Connections are real TCP
// sockets kept open by holder processes (the benchmark binary re-executed,
// [HolderMain]) inside the pods' cgroups, as the sidecar's uid, in a
// network namespace of the run: idle keep-alive pools, plus a few live
// connections exchanging messages. The run's cgroups, namespace and
// processes belong to a node of the simulator (test/sim), whose janitor
// removes them even if the benchmark is killed.
//
// A run has three phases: pods are added up to each step of
// [Config.Pods] not above [MaxConnPods]; then connections are opened up
// to each step of [Config.Conns] (the last usually the maps' capacity),
// spread over those pods; then pods are added up to the larger steps
// (1000), the maps still full. Every step measures one sweep pass
// ([bpf.Node.Sweep], wall and CPU), one scrape of the installer's /metrics
// (wall and the installer's CPU), the installer's memory, the kernel
// memory of the node state's maps (their memlock), and the time of a new
// connection (connect to the first byte's echo) in an attached pod against
// a pod that is not attached. The holders are stopped and the pods deleted
// last, in reverse order, each DEL timed.
package scale

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxConnPods is the most pods that hold connections: a node's 110 to 250.
// Steps above it only add pods (the ADD curve to 1000).
const MaxConnPods = 250

// Config says what to measure.
type Config struct {
	Pods      []int  // pod counts, ascending (DefaultPods)
	Conns     []int  // connection counts, ascending; Capacity stands for the maps' capacity (DefaultConns)
	MapSize   uint32 // bpf.Options.MapSize of the state the run creates (0: the default)
	Live      int    // live connections among the held ones (8)
	Probes    int    // new connections timed per step and pod kind (600)
	Plugin    string // the plugin binary
	Installer string // the installer binary
	Log       func(format string, args ...any)
}

// Capacity in Config.Conns is the maps' capacity in connections: half the
// entries of the pair map (two directions per connection).
const Capacity = -1

// Defaults of the full run.
var (
	DefaultPods  = []int{1, 10, 50, 100, 250, 1000}
	DefaultConns = []int{0, 1000, 4000, 8000, 16000, 24000, Capacity}
)

// ParseCounts parses a comma-separated list of counts in ascending order,
// e.g. BENCH_SCALE_PODS's "1,50,250"; "max" (when allowMax) is
// [Capacity] and must come last. name is the variable, for errors.
func ParseCounts(name, s string, allowMax bool) ([]int, error) {
	var out []int
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "max" && allowMax {
			out = append(out, Capacity)
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s=%q: item %d %q is not a count%s", name, s, i+1, f, map[bool]string{true: " or max"}[allowMax])
		}
		if len(out) > 0 && (out[len(out)-1] == Capacity || n <= out[len(out)-1]) {
			return nil, fmt.Errorf("%s=%q: item %d (%s) is not above the one before (counts ascend, max last)", name, s, i+1, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// connPods is the pod count at which connections are opened: the largest
// step not above MaxConnPods.
func (c *Config) connPods() int {
	n := 0
	for _, p := range c.Pods {
		if p <= MaxConnPods {
			n = p
		}
	}
	return n
}

// validate checks the config and applies defaults.
func (c *Config) validate() error {
	if len(c.Pods) == 0 {
		c.Pods = DefaultPods
	}
	if c.Conns == nil {
		c.Conns = DefaultConns
	}
	if c.Live == 0 {
		c.Live = 8
	}
	if c.Probes == 0 {
		c.Probes = 600
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	if !slices.IsSorted(c.Pods) || c.Pods[0] <= 0 {
		return fmt.Errorf("pod counts %v: want positive counts in ascending order", c.Pods)
	}
	if c.connPods() == 0 {
		return fmt.Errorf("pod counts %v: none at or below %d to hold connections", c.Pods, MaxConnPods)
	}
	return nil
}
