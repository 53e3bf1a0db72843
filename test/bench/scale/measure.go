package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// processCPU is the CPU time every thread of process pid ran, from the
// first field of each /proc/PID/task/TID/schedstat (nanoseconds, exact,
// where /proc/PID/stat counts 10 ms ticks).
func processCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("cpu of process %d: no tasks (%v)", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread ended
		}
		if err != nil {
			return 0, fmt.Errorf("cpu of process %d: %w", pid, err)
		}
		ns, err := parseSchedstat(string(b))
		if err != nil {
			return 0, fmt.Errorf("cpu of process %d: %s: %w", pid, t, err)
		}
		sum += ns
	}
	return sum, nil
}

// parseSchedstat reads the run time of a schedstat line ("run wait slices").
func parseSchedstat(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, fmt.Errorf("schedstat %q: want 3 fields", s)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat %q: %w", s, err)
	}
	return time.Duration(ns), nil
}

// memory is a process's resident memory now and at its peak, in MiB.
type memory struct{ rss, peak float64 }

// processMemory reads VmRSS and VmHWM of /proc/PID/status.
func processMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	return parseStatus(string(b))
}

func parseStatus(s string) (memory, error) {
	var m memory
	found := 0
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return memory{}, fmt.Errorf("status line %q: want a size in kB", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return memory{}, fmt.Errorf("status line %q: %w", strings.TrimSpace(line), err)
		}
		if k == "VmRSS" {
			m.rss = kb / 1024
		} else {
			m.peak = kb / 1024
		}
		found++
	}
	if found != 2 {
		return memory{}, errors.New("status: no VmRSS or VmHWM")
	}
	return m, nil
}

// kernelMemory sums what the kernel charges for the maps pinned under the
// node state's maps/ folder (their memlock: the memory of their entries on
// 6.4 and later), in MiB, and gives each map's share.
func kernelMemory(stateDir string) (float64, map[string]float64, error) {
	dir := filepath.Join(stateDir, "maps")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, fmt.Errorf("kernel memory: %w", err)
	}
	var sum uint64
	each := map[string]float64{}
	for _, e := range entries {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return 0, nil, fmt.Errorf("kernel memory of map %s: %w", e.Name(), err)
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("kernel memory of map %s: %w", e.Name(), err)
		}
		b, ok := info.Memlock()
		if !ok {
			return 0, nil, fmt.Errorf("kernel memory of map %s: the kernel does not report it", e.Name())
		}
		sum += b
		each[e.Name()] = float64(b) / (1 << 20)
	}
	return float64(sum) / (1 << 20), each, nil
}

// cost is the wall and CPU time of one operation, in milliseconds.
type cost struct{ wall, cpu float64 }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timeSweep runs sweep (a pass, as the installer runs one per interval, or
// a whole cycle) and measures it; the CPU is this process's, which does
// nothing else meanwhile.
func timeSweep(sweep func() (bpf.Swept, error)) (cost, error) {
	cpu0, err := processCPU(os.Getpid())
	if err != nil {
		return cost{}, err
	}
	start := time.Now()
	if _, err := sweep(); err != nil {
		return cost{}, fmt.Errorf("sweep: %w", err)
	}
	wall := time.Since(start)
	cpu1, err := processCPU(os.Getpid())
	if err != nil {
		return cost{}, err
	}
	return cost{ms(wall), ms(cpu1 - cpu0)}, nil
}

// timeScrape GETs url (the installer's /metrics) and measures the wall
// time and the CPU the installer (pid) spent meanwhile; it returns the
// body's size too.
func timeScrape(ctx context.Context, url string, pid int) (cost, int, error) {
	cpu0, err := processCPU(pid)
	if err != nil {
		return cost{}, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return cost{}, 0, err
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cost{}, 0, fmt.Errorf("scrape: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	wall := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		return cost{}, 0, fmt.Errorf("scrape %s: status %d, %v", url, resp.StatusCode, err)
	}
	cpu1, err := processCPU(pid)
	if err != nil {
		return cost{}, 0, err
	}
	return cost{ms(wall), ms(cpu1 - cpu0)}, len(body), nil
}
