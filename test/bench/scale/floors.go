package scale

import "fmt"

// JudgeFloors sets r.Floors from the steps and the ADD times.
func (r *Result) JudgeFloors() {
	r.Floors = []Floor{r.addFloor(), r.growthFloor()}
	full := r.fullStep()
	if full == nil {
		for _, what := range []string{"scrape under 20 ms (wall and CPU) at full maps", "sweep pass under 20 ms of CPU at full maps",
			"installer RSS under 64 MiB at full maps", "new connection at full maps at most 10% over an unattached pod's"} {
			r.Floors = append(r.Floors, Floor{What: what, Figure: "no step filled the maps (95% of the pair map, or new connections refused for want of room)"})
		}
		return
	}
	at := fmt.Sprintf("%d pods, %d connections held, %d accelerated (%.1f%% of the capacity)", full.Pods, full.Conns, full.Accelerated,
		100*float64(full.Accelerated)/float64(max(1, r.Capacity)))
	sweep := max(full.SweepCPUms, full.Sweep2CPUms)
	ratio := full.Connect.Ratio
	r.Floors = append(r.Floors,
		Floor{What: "scrape under 20 ms (wall and CPU) at full maps", Judged: true,
			Met:    full.ScrapeMs < MaxScrapeMs && full.ScrapeCPUms < MaxScrapeMs,
			Figure: fmt.Sprintf("%.1f ms wall, %.1f ms of the installer's CPU, %s", full.ScrapeMs, full.ScrapeCPUms, at)},
		Floor{What: "sweep pass under 20 ms of CPU at full maps", Judged: true, Met: sweep < MaxSweepCPUms,
			Figure: fmt.Sprintf("%.1f ms CPU (%.1f ms wall) for the first pass, %.1f ms CPU for the next; a whole cycle %.1f ms CPU; %s",
				full.SweepCPUms, full.SweepMs, full.Sweep2CPUms, full.CycleCPUms, at)},
		Floor{What: "installer RSS under 64 MiB at full maps", Judged: true, Met: full.RSSMiB < MaxRSSMiB,
			Figure: fmt.Sprintf("%.1f MiB (peak %.1f MiB), %s", full.RSSMiB, full.PeakMiB, at)},
		Floor{What: "new connection at full maps at most 10% over an unattached pod's", Judged: true,
			Met: ratio > 0 && ratio <= MaxConnectRatio,
			Figure: fmt.Sprintf("%.2fx: connect to first byte p50 %.0f µs against %.0f µs, p99 %.0f against %.0f µs (median ratio of interleaved rounds); counted: %s; %s",
				ratio, full.Connect.AccelP50, full.Connect.PlainP50, full.Connect.AccelP99, full.Connect.PlainP99, full.Connect.countedString(), at)},
	)
}

// addFloor: ADD p99 under 15 ms at 250 pods, from the ADDs of the step
// that reached MaxConnPods pods.
func (r *Result) addFloor() Floor {
	f := Floor{What: "ADD p99 under 15 ms at 250 pods"}
	for _, s := range r.Steps {
		if s.Phase == PhasePods && s.Pods == MaxConnPods && s.Add != nil {
			f.Judged, f.Met = true, s.Add.P99 < MaxAddP99ms
			f.Figure = fmt.Sprintf("p99 %.1f ms, p50 %.1f ms over the ADDs of pods %d to %d", s.Add.P99, s.Add.P50, MaxConnPods-s.Add.N+1, MaxConnPods)
			return f
		}
	}
	f.Figure = "the run did not reach 250 pods"
	return f
}

// growthFloor: the last pods' ADD (median of the last [edge]) within 20%
// of the first pods' (median of the first [edge]), at 1000 pods.
func (r *Result) growthFloor() Floor {
	f := Floor{What: "ADD of pod 1000 within 20% of pod 1"}
	n := len(r.AddMs)
	if n < 2*edge {
		f.Figure = fmt.Sprintf("%d pods, want at least %d", n, 2*edge)
		return f
	}
	first, last := percentile(r.AddMs[:edge], 50), percentile(r.AddMs[n-edge:], 50)
	f.Judged, f.Met = n >= 1000, last <= MaxAddGrowth*first
	f.Figure = fmt.Sprintf("pods %d-%d: %.1f ms, pods 1-%d: %.1f ms (median of %d; %.2fx)", n-edge+1, n, last, edge, first, edge, last/first)
	if n < 1000 {
		f.Figure += fmt.Sprintf("; only %d pods", n)
	}
	return f
}

// fullStep is the first step at full maps (the connection curve's last,
// at MaxConnPods pods, in a full run): the pair map 95% full, or new
// connections refused because the shared pool is used up or a map is full.
func (r *Result) fullStep() *Step {
	for i := range r.Steps {
		s := &r.Steps[i]
		if (r.Capacity > 0 && float64(s.Accelerated) >= 0.95*float64(r.Capacity)) ||
			s.Connect.Counted["rejected_shared_pool"] > 0 || s.Connect.Counted["fallback_map_full"] > 0 {
			return s
		}
	}
	return nil
}
