package scale

import (
	"context"
	"fmt"
)

// measureStep measures the node as it is: map fill, two sweep passes and a
// whole sweep cycle, three
// scrapes, the installer's memory, the maps' kernel memory, new
// connections.
func (r *run) measureStep(ctx context.Context, phase string, conns int) (Step, error) {
	s := Step{Phase: phase, Pods: len(r.pods), Conns: conns}
	fills, err := r.node.MapFill()
	if err != nil {
		return s, err
	}
	for _, f := range fills {
		s.Maps = append(s.Maps, MapFill{Name: f.Name, Entries: f.Entries, Max: f.MaxEntries})
		if f.Name == pairMap {
			s.Accelerated = f.Entries / 2
		}
	}
	// The installer's pass (SweepStep, a bounded slice of each map), twice;
	// then a whole cycle (Sweep), what a leak waits for at most.
	first, err := timeSweep(r.node.SweepStep)
	if err != nil {
		return s, err
	}
	idle, err := timeSweep(r.node.SweepStep)
	if err != nil {
		return s, err
	}
	cycle, err := timeSweep(r.node.Sweep)
	if err != nil {
		return s, err
	}
	s.SweepMs, s.SweepCPUms, s.Sweep2Ms, s.Sweep2CPUms = first.wall, first.cpu, idle.wall, idle.cpu
	s.CycleMs, s.CycleCPUms = cycle.wall, cycle.cpu
	var walls, cpus []float64
	for range 3 {
		c, size, err := timeScrape(ctx, r.inst.url+"/metrics", r.inst.pid())
		if err != nil {
			return s, err
		}
		walls, cpus, s.ScrapeBytes = append(walls, c.wall), append(cpus, c.cpu), size
	}
	s.ScrapeMs, s.ScrapeCPUms = percentile(walls, 50), percentile(cpus, 50)
	mem, err := processMemory(r.inst.pid())
	if err != nil {
		return s, err
	}
	s.RSSMiB, s.PeakMiB = mem.rss, mem.peak
	if s.KernelMiB, s.KernelMaps, err = kernelMemory(r.node.Dir()); err != nil {
		return s, err
	}
	if s.Connect, err = r.probe(); err != nil {
		return s, err
	}
	r.cfg.Log("%-5s %4d pods %6d conns (%5d accelerated): sweep pass %.1f ms (CPU %.1f, next %.1f; cycle %.1f), scrape %.1f ms (CPU %.1f, %d B), "+
		"installer %.1f MiB, maps %.1f MiB, new conn p50 %.0f/%.0f µs (%s)",
		phase, s.Pods, s.Conns, s.Accelerated, s.SweepMs, s.SweepCPUms, s.Sweep2CPUms, s.CycleCPUms, s.ScrapeMs, s.ScrapeCPUms, s.ScrapeBytes,
		s.RSSMiB, s.KernelMiB, s.Connect.AccelP50, s.Connect.PlainP50, s.Connect.countedString())
	return s, nil
}

// probe times new connections in pod 1 and in the unattached pod, in 20
// interleaved rounds, and counts what the data path did with pod 1's. The
// ratio is the median of the rounds' ratios (their p50s): the machine's
// state shifts between rounds more than within one.
func (r *run) probe() (Connect, error) {
	const rounds = 20
	per := max(1, r.cfg.Probes/rounds)
	var accel, plain, ratios []float64
	before, err := r.node.Counters()
	if err != nil {
		return Connect{}, err
	}
	for range rounds {
		a, err := r.holders[0][0].probe(per)
		if err != nil {
			return Connect{}, fmt.Errorf("probe pod 1: %w", err)
		}
		p, err := r.plain.probe(per)
		if err != nil {
			return Connect{}, fmt.Errorf("probe the unattached pod: %w", err)
		}
		accel, plain = append(accel, a...), append(plain, p...)
		if pp := percentile(p, 50); pp > 0 {
			ratios = append(ratios, percentile(a, 50)/pp)
		}
	}
	after, err := r.node.Counters()
	if err != nil {
		return Connect{}, err
	}
	c := Connect{AccelP50: percentile(accel, 50), AccelP99: percentile(accel, 99),
		PlainP50: percentile(plain, 50), PlainP99: percentile(plain, 99), Ratio: percentile(ratios, 50), Counted: map[string]uint64{}}
	for name, n := range after {
		if d := n - before[name]; connCounter(string(name)) && d > 0 {
			c.Counted[string(name)] = d
		}
	}
	return c, nil
}
