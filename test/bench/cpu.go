//go:build meshbench

package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPU per unit of work, measured around every measurement in two ways:
//
//   - pods: the CPU time the kernel charged to the two pods' cgroups
//     (cgroup v2 cpu.stat usage_usec of sim.Pod.CgroupDir, summed): the
//     apps, the tool, and the sidecars when the mode has them, with the
//     kernel work done in their context (system calls, the TCP stack,
//     softirqs run on their way out, BPF programs). Other processes on the
//     machine do not count, so this figure leads.
//   - node: the whole machine's busy time from /proc/stat's "cpu" line,
//     user+nice+system+irq+softirq; idle, iowait and steal are excluded
//     (guest time is already inside user). It also counts the benchmark
//     itself and anything else running on the node.
//
// Both are divided by the work the measurement did in the same window
// (requests or round trips, connections, or MiB for iperf3). The window
// spans the tool's whole run, its start and connection setup included.

// userHZ is the unit of /proc/stat's times (USER_HZ, 100 on every Linux
// architecture the node runs).
const userHZ = 100

// cpuReading is the CPU time spent up to a moment.
type cpuReading struct {
	node time.Duration // busy time of the whole node (/proc/stat)
	pods time.Duration // usage_usec of the pods' cgroups, summed
}

// cpuUse is the CPU time spent between two readings.
type cpuUse struct{ node, pods time.Duration }

// readCPU reads the node's busy time and the usage of the cgroups.
func readCPU(cgroups ...string) (cpuReading, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuReading{}, err
	}
	var r cpuReading
	if r.node, err = parseProcStat(string(b)); err != nil {
		return cpuReading{}, err
	}
	for _, dir := range cgroups {
		f := filepath.Join(dir, "cpu.stat")
		b, err := os.ReadFile(f)
		if err != nil {
			return cpuReading{}, err
		}
		u, err := parseCgroupUsage(string(b))
		if err != nil {
			return cpuReading{}, fmt.Errorf("%s: %w", f, err)
		}
		r.pods += u
	}
	return r, nil
}

// since is the CPU time spent from an earlier reading to r.
func (r cpuReading) since(earlier cpuReading) cpuUse {
	return cpuUse{node: r.node - earlier.node, pods: r.pods - earlier.pods}
}

// parseProcStat returns the busy time of /proc/stat's aggregate "cpu"
// line: user+nice+system+irq+softirq (fields 1, 2, 3, 6, 7), not idle,
// iowait or steal (4, 5, 8), nor guest and guest_nice (9, 10), which user
// and nice already include.
func parseProcStat(text string) (time.Duration, error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 8 {
			return 0, fmt.Errorf("/proc/stat: short cpu line %q", sc.Text())
		}
		var ticks uint64
		for _, i := range []int{1, 2, 3, 6, 7} {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/stat: cpu field %d: %w", i, err)
			}
			ticks += v
		}
		return time.Duration(ticks) * time.Second / userHZ, nil
	}
	return 0, fmt.Errorf("/proc/stat: no cpu line")
}

// parseCgroupUsage returns usage_usec of a cgroup v2 cpu.stat.
func parseCgroupUsage(text string) (time.Duration, error) {
	for line := range strings.Lines(text) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || k != "usage_usec" {
			continue
		}
		us, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("usage_usec: %w", err)
		}
		return time.Duration(us) * time.Microsecond, nil
	}
	return 0, fmt.Errorf("no usage_usec in cpu.stat")
}

// cpuKeys are the JSON keys of a measurement's CPU figures: microseconds
// of the pods' and of the node's CPU per unit of work, e.g.
// "wrk_1k_cpu_pods_us_per_req".
func cpuKeys(stem, unit string) (pods, node string) {
	return stem + "_cpu_pods_us_per_" + unit, stem + "_cpu_node_us_per_" + unit
}

// record writes the CPU per unit of work into r under the keys of stem
// and unit; nothing when no work was done.
func (u cpuUse) record(r Result, stem, unit string, work float64) {
	if work <= 0 {
		return
	}
	pods, node := cpuKeys(stem, unit)
	r[pods] = float64(u.pods.Nanoseconds()) / 1e3 / work
	r[node] = float64(u.node.Nanoseconds()) / 1e3 / work
}

// cpuFigures are the two CPU figures of a measurement, labelled after
// what, e.g. "wrk 1 KiB CPU µs/req pods".
func cpuFigures(stem, unit, what string) []Figure {
	pods, node := cpuKeys(stem, unit)
	return []Figure{
		{pods, what + " CPU µs/" + unit + " pods", true},
		{node, what + " CPU µs/" + unit + " node", true},
	}
}

// PodsCPU is the CPU time charged so far to the cgroups (cgroup v2
// cpu.stat usage_usec, summed), for callers outside the benchmark (the
// demo).
func PodsCPU(cgroups ...string) (time.Duration, error) {
	r, err := readCPU(cgroups...)
	return r.pods, err
}
