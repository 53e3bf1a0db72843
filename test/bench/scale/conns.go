package scale

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// spread is how many of total connections each of pods pods holds: as
// even as can be, the first pods one more.
func spread(total, pods int) []int {
	out := make([]int, pods)
	for i := range out {
		out[i] = total / pods
		if i < total%pods {
			out[i]++
		}
	}
	return out
}

// connsStep opens connections up to total, spread over the first
// ConnPods pods (pod 1's holder also runs the live ones), then measures.
func (r *run) connsStep(ctx context.Context, total int) error {
	if total > 0 && r.connsHeld() == 0 {
		// The unattached pod runs as many: the two processes that time
		// new connections are equally busy.
		live := min(r.cfg.Live, total)
		for _, h := range []*holderProc{r.holders[0][0], r.plain} {
			if _, err := h.call(fmt.Sprintf("live %d", live)); err != nil {
				return err
			}
		}
		r.holders[0][0].conns += live
	}
	want := spread(total, r.res.ConnPods) // pod 1's live ones count
	for i, w := range want {
		if err := r.fill(ctx, i, w); err != nil {
			return err
		}
	}
	s, err := r.measureStep(ctx, PhaseConns, r.connsHeld())
	if err != nil {
		return err
	}
	r.res.Steps = append(r.res.Steps, s)
	return nil
}

// fill brings pod i's held connections up to at least want, starting
// holders as needed.
func (r *run) fill(ctx context.Context, i, want int) error {
	for len(r.holders) <= i {
		r.holders = append(r.holders, nil)
	}
	held := 0
	for _, h := range r.holders[i] {
		held += h.conns
	}
	for held < want {
		hs := r.holders[i]
		if len(hs) == 0 || hs[len(hs)-1].conns >= maxHolderConns {
			h, err := startHolder(ctx, r.net.Exe(), r.net.Netns, r.pods[i])
			if err != nil {
				return err
			}
			r.holders[i] = append(r.holders[i], h)
		}
		h := r.holders[i][len(r.holders[i])-1]
		n := min(want-held, maxHolderConns-h.conns)
		if err := h.open(n); err != nil {
			return fmt.Errorf("pod %d: %w", i+1, err)
		}
		held += n
	}
	return nil
}

// deleteAll stops the holders (the pods' processes end before their DEL,
// as in a runtime), then deletes the pods last first, timing each DEL.
func (r *run) deleteAll(ctx context.Context) error {
	if err := r.stopHolders(); err != nil {
		return err
	}
	r.res.DelMs = make([]float64, len(r.pods))
	for i := len(r.pods) - 1; i >= 0; i-- {
		d, err := r.cni.exec(ctx, "DEL", i+1, r.pods[i])
		if err != nil {
			return err
		}
		r.res.DelMs[i] = d
		r.pods = r.pods[:i]
	}
	prev := 0
	for i := range r.res.Steps {
		s := &r.res.Steps[i]
		if s.Phase != PhaseConns && s.Pods > prev {
			s.Del = dist(r.res.DelMs[prev:s.Pods])
			prev = s.Pods
		}
	}
	if pods, err := r.node.Pods(); err != nil || len(pods) != 0 {
		return fmt.Errorf("%d pods still attached after DEL (%v)", len(pods), err)
	}
	return nil
}

func (r *run) stopHolders() error {
	var errs []error
	for _, hs := range r.holders {
		for _, h := range hs {
			errs = append(errs, h.stop(nil))
		}
	}
	r.holders = nil
	if r.plain != nil {
		errs = append(errs, r.plain.stop(nil))
		r.plain = nil
	}
	return errors.Join(errs...)
}

// close stops and removes everything the run made.
func (r *run) close() error {
	errs := []error{r.stopHolders()}
	if r.inst != nil {
		errs = append(errs, r.inst.stop())
	}
	if r.node != nil {
		errs = append(errs, r.node.Remove())
	}
	if r.sim != nil {
		errs = append(errs, r.sim.Close())
	}
	if r.tmp != "" {
		errs = append(errs, os.RemoveAll(r.tmp))
	}
	errs = append(errs, unlockRun(r.lock))
	return errors.Join(errs...)
}

// connCounters are the counters that say what became of new connections.
func connCounter(name string) bool {
	return strings.HasPrefix(name, "rejected_") || slices.Contains([]string{
		"connections_seen", "connections_accepted", "connecting_registered", "fallback_map_full"}, name)
}
